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
///
/// One instance computes the closures of all the functions of a module in
/// turn: what it has seen is marked with the number of the current closure
/// rather than kept in sets, so that nothing is cleared or hashed between
/// functions.
final class DependencyClosure {
    private let index: ModuleIndex
    private var generation = 0
    private var includedMark: [Int]
    private var fullyIncludedMark: [Int]
    private var resolvedMark: [Int]
    private var included: [Int] = []
    private var pending: [Int] = []

    init(index: ModuleIndex) {
        self.index = index
        self.includedMark = Array(repeating: 0, count: index.declarations.count)
        self.fullyIncludedMark = Array(repeating: 0, count: index.declarations.count)
        self.resolvedMark = Array(repeating: 0, count: index.nameCount)
    }

    /// The declarations that `roots` reach, the roots included, in no particular order.
    func closure(of roots: [Int]) -> [Int] {
        self.generation += 1
        self.included = []
        self.pending = []
        for root in roots { self.include(root) }
        while let name = self.pending.popLast() {
            guard self.resolvedMark[name] != self.generation else { continue }
            self.resolvedMark[name] = self.generation
            for found in self.index.byName[name] {
                if self.index.isMember[found] {
                    self.include(found)
                } else {
                    self.includeFully(found)
                }
            }
        }
        return self.included
    }

    /// Includes a declaration and the headers around it, and queues what it refers to.
    private func include(_ declaration: Int) {
        var current: Int? = declaration
        while let next = current, self.includedMark[next] != self.generation {
            self.includedMark[next] = self.generation
            self.included.append(next)
            self.pending += self.index.references(of: next)
            if self.index.isRequirement[next] { self.pending += self.index.ownNames[next] }
            current = self.index.parents[next]
        }
    }

    /// Includes a type or extension with everything inside it.
    private func includeFully(_ header: Int) {
        guard self.fullyIncludedMark[header] != self.generation else { return }
        self.fullyIncludedMark[header] = self.generation
        self.include(header)
        for member in self.index.contents[header] {
            if self.index.isMember[member] {
                self.include(member)
            } else {
                self.includeFully(member)
            }
        }
    }
}
