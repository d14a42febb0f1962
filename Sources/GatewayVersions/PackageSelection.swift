/// Which resolved packages to fold into the versions, from the names a
/// package's `cache-versions.json` lists.
public enum PackageSelection {
    /// The entries of `resolved` (`identity=version`, as the plugin passes
    /// them) whose identity one of `wanted` names, case-insensitively, or all
    /// of them when `wanted` contains `*`; and the names that matched nothing.
    public static func select(_ wanted: [String], from resolved: [String]) -> (folded: [String], unmatched: [String]) {
        let names = Set(wanted.map { $0.lowercased() })
        let everything = names.contains("*")
        var matched = Set<String>()
        var folded: [String] = []
        for entry in resolved {
            let identity = String(entry.prefix { $0 != "=" }).lowercased()
            if everything || names.contains(identity) {
                folded.append(entry)
                matched.insert(identity)
            }
        }
        let unmatched = names.subtracting(matched).subtracting(["*"]).sorted()
        return (folded.sorted(), unmatched)
    }
}
