/// The declarations of a module's files, put together from their summaries
/// (``FileSummary``) and found by name.
///
/// Names are numbered: the closures look names up millions of times on a
/// large module, and comparing numbers is much cheaper than hashing strings.
/// A reference to a name that the module does not declare (a standard
/// library function, a local variable) is dropped here.
///
/// Each declaration's facts are kept in arrays of their own: the closures read
/// them millions of times, and reading a field of a struct in an array copies
/// all of it in a debug build, which is how the plugin's tool is built when
/// the user's package is.
final class ModuleIndex {
    let summaries: [FileSummary]
    /// The `@Cached` functions: the module-wide number of each one's
    /// declaration, and its summary.
    private(set) var cached: [(declaration: Int, function: FileSummary.Cached)] = []
    /// For each declaration: its file, and its index among the file's entries.
    private(set) var places: [(file: Int, entry: Int)] = []
    /// The declarations (members, type and extension headers) by the number of a name they are found under.
    private(set) var byName: [[Int]] = []
    /// The numbers of each declaration's own names.
    private(set) var ownNames: [[Int]] = []
    /// The numbers of the names each declaration mentions that the module declares.
    private(set) var references: [[Int]] = []
    private(set) var parents: [Int?] = []
    private(set) var isMember: [Bool] = []
    private(set) var isRequirement: [Bool] = []
    private(set) var contents: [[Int]] = []

    init(summaries: [FileSummary]) {
        self.summaries = summaries
        var nameNumbers: [String: Int] = [:]
        for (file, summary) in summaries.enumerated() {
            let base = self.places.count
            for (number, entry) in summary.entries.enumerated() {
                let index = base + number
                self.places.append((file, number))
                var own: [Int] = []
                for name in entry.names {
                    let number: Int
                    if let known = nameNumbers[name] {
                        number = known
                    } else {
                        number = self.byName.count
                        nameNumbers[name] = number
                        self.byName.append([])
                    }
                    self.byName[number].append(index)
                    own.append(number)
                }
                self.ownNames.append(own)
                self.parents.append(entry.parent.map { base + $0 })
                self.isMember.append(entry.kind == .member)
                self.isRequirement.append(entry.isRequirement)
                self.contents.append(entry.contents.map { base + $0 })
            }
            for function in summary.cached {
                self.cached.append((base + function.declaration, function))
            }
        }
        // Resolved once every file has declared its names.
        for summary in summaries {
            for entry in summary.entries {
                self.references.append(entry.references.compactMap { nameNumbers[$0] })
            }
        }
    }

    /// How many declarations the module has.
    var declarationCount: Int { self.places.count }

    /// How many different names the module's declarations are found under.
    var nameCount: Int { self.byName.count }

    /// The summary of declaration `index`.
    func entry(_ index: Int) -> FileSummary.Entry {
        let place = self.places[index]
        return self.summaries[place.file].entries[place.entry]
    }

    /// The path of the file declaration `index` is in.
    func path(of index: Int) -> String {
        self.summaries[self.places[index].file].path
    }
}
