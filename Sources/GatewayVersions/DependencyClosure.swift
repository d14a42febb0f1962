/// The declarations of a module that a cached function reaches, transitively,
/// through the names it mentions.
///
/// Names are resolved over-approximately: a name stands for every declaration
/// of the module found under it, whatever its type, labels or arguments
/// (overloads, methods of the same name on different types, a protocol
/// requirement and its witnesses). A type's name brings in the whole type:
/// its header, every member and nested type, and every extension of the name.
/// A member brings in the headers of the types and extensions around it
/// (not their other members). A protocol requirement brings in every
/// declaration of its name: the witnesses. An extra declaration costs a cache
/// miss after it changes; a missing one would serve results of old code.
struct DependencyClosure {
    private let index: ModuleIndex
    private(set) var included = Set<Int>()
    private var fullyIncluded = Set<Int>()
    private var resolved = Set<String>()
    private var pending: [String] = []

    /// The closure of the declarations `roots`.
    init(of roots: [Int], in index: ModuleIndex) {
        self.index = index
        for root in roots { self.include(root) }
        while let name = self.pending.popLast() {
            guard self.resolved.insert(name).inserted else { continue }
            for found in index.declarations(named: name) {
                if index.declarations[found].kind == .member {
                    self.include(found)
                } else {
                    self.includeFully(found)
                }
            }
        }
    }

    /// Includes a declaration and the headers around it, and queues what it refers to.
    private mutating func include(_ declaration: Int) {
        var current: Int? = declaration
        while let next = current, self.included.insert(next).inserted {
            self.pending += self.index.references(of: next)
            let found = self.index.declarations[next]
            if found.isRequirement { self.pending += found.names }
            current = found.parent
        }
    }

    /// Includes a type or extension with everything inside it.
    private mutating func includeFully(_ header: Int) {
        guard self.fullyIncluded.insert(header).inserted else { return }
        self.include(header)
        for member in self.index.declarations[header].contents {
            if self.index.declarations[member].kind == .member {
                self.include(member)
            } else {
                self.includeFully(member)
            }
        }
    }
}
