/// The declarations of a module that each cached function reaches,
/// transitively, through the names it mentions.
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
/// These rules make a graph with three kinds of node: *include d* (declaration
/// `d` and the headers around it), *include fully h* (header `h` with
/// everything inside it) and *name n* (every declaration found under `n`). A
/// function's closure is the set of declarations whose *include* node is
/// reachable from its own. All closures are worked out in one pass: the
/// strongly connected components of the part of the graph the functions reach
/// are found (Tarjan's algorithm, without recursion), each component's
/// reachable declarations kept as a bit set, and since a component is
/// finished only after every component it reaches, its set is its own
/// declarations and the union of its successors' sets. A bit set is kept per
/// component, not per function, so functions that share helpers share work:
/// the cost is about the graph's size times a bit set's length, instead of
/// the sum of the closures' sizes. Declaration `d` is bit `bit[d]`: the
/// caller's order (the versions number declarations by hash, so that a set
/// read in order is already sorted).
struct DependencyClosure {
    /// A set of declarations, as bits numbered by `bit`.
    struct Set {
        fileprivate var words: ArraySlice<UInt64>

        /// The bit numbers in the set, in increasing order.
        var bits: [Int] {
            var result: [Int] = []
            self.words.withUnsafeBufferPointer { words in
                for (offset, word) in words.enumerated() where word != 0 {
                    var rest = word
                    while rest != 0 {
                        result.append(offset * 64 + rest.trailingZeroBitCount)
                        rest &= rest - 1
                    }
                }
            }
            return result
        }

        /// Adds the members of `other`.
        mutating func formUnion(_ other: Set) {
            precondition(self.words.count == other.words.count)
            other.words.withUnsafeBufferPointer { source in
                self.words.withUnsafeMutableBufferPointer { target in
                    for index in 0..<target.count { target[index] |= source[index] }
                }
            }
        }
    }

    private let wordCount: Int
    /// The bit sets of the reached components, `wordCount` words each, in the order the components were finished.
    private let sets: Words
    /// Each node's component's position in `sets`, or -1 for a node no function reaches.
    private let component: [Int32]

    /// Works out the closures of `roots`, numbering declaration `d` as bit `bit[d]`.
    init(index: ModuleIndex, roots: [Int], bit: [Int]) {
        let graph = Graph(index: index)
        self.wordCount = (index.declarationCount + 63) / 64
        (self.sets, self.component) = Self.findComponents(graph: graph, roots: roots, bit: bit, wordCount: self.wordCount)
    }

    /// The declarations `root` reaches, itself included (`root` must be one of the roots).
    func closure(of root: Int) -> Set {
        let position = Int(self.component[root])
        precondition(position >= 0, "not a root of this closure")
        return Set(words: self.sets.words(position * self.wordCount, count: self.wordCount)[...])
    }

    // MARK: Components

    /// Tarjan's algorithm from each root in turn. The tool is built without
    /// optimisation when the user's package is, so the loops work on pointers:
    /// in a debug build an array's subscript is a call, a pointer's is not.
    private static func findComponents(graph: Graph, roots: [Int], bit: [Int], wordCount: Int) -> (Words, [Int32]) {
        let nodeCount = graph.nodeCount
        let unvisited: Int32 = -1
        let order = UnsafeMutablePointer<Int32>.allocate(capacity: nodeCount)
        let lowest = UnsafeMutablePointer<Int32>.allocate(capacity: nodeCount)
        let onStack = UnsafeMutablePointer<Bool>.allocate(capacity: nodeCount)
        let stack = UnsafeMutablePointer<Int32>.allocate(capacity: nodeCount)
        // The depth-first path: a node, and the position of its next successor to visit.
        let pathNode = UnsafeMutablePointer<Int32>.allocate(capacity: nodeCount)
        let pathNext = UnsafeMutablePointer<Int32>.allocate(capacity: nodeCount)
        order.initialize(repeating: unvisited, count: nodeCount)
        lowest.initialize(repeating: 0, count: nodeCount)
        onStack.initialize(repeating: false, count: nodeCount)
        defer {
            for pointer in [order, lowest, stack, pathNode, pathNext] { pointer.deallocate() }
            onStack.deallocate()
        }
        var component = Array(repeating: unvisited, count: nodeCount)
        let sets = Words()
        var stackCount = 0
        var pathCount = 0
        var counter: Int32 = 0
        var componentCount: Int32 = 0

        graph.offsets.withUnsafeBufferPointer { offsets in
            graph.targets.withUnsafeBufferPointer { targets in
                bit.withUnsafeBufferPointer { bit in
                    component.withUnsafeMutableBufferPointer { component in
                        func visit(_ node: Int) {
                            order[node] = counter
                            lowest[node] = counter
                            counter += 1
                            stack[stackCount] = Int32(node)
                            stackCount += 1
                            onStack[node] = true
                            pathNode[pathCount] = Int32(node)
                            pathNext[pathCount] = offsets[node]
                            pathCount += 1
                        }
                        for root in roots where order[root] == unvisited {
                            visit(root)
                            while pathCount > 0 {
                                let node = Int(pathNode[pathCount - 1])
                                let next = pathNext[pathCount - 1]
                                if next < offsets[node + 1] {
                                    pathNext[pathCount - 1] = next + 1
                                    let successor = Int(targets[Int(next)])
                                    if order[successor] == unvisited {
                                        visit(successor)
                                    } else if onStack[successor], order[successor] < lowest[node] {
                                        lowest[node] = order[successor]
                                    }
                                    continue
                                }
                                pathCount -= 1
                                if pathCount > 0 {
                                    let parent = Int(pathNode[pathCount - 1])
                                    if lowest[node] < lowest[parent] { lowest[parent] = lowest[node] }
                                }
                                guard lowest[node] == order[node] else { continue }

                                // `node` roots a component: the stack down to it.
                                let position = componentCount
                                componentCount += 1
                                var start = stackCount - 1
                                while stack[start] != Int32(node) { start -= 1 }
                                for slot in start..<stackCount {
                                    onStack[Int(stack[slot])] = false
                                    component[Int(stack[slot])] = position
                                }
                                let base = Int(position) * wordCount
                                let words = sets.grow(to: base + wordCount)
                                for slot in start..<stackCount {
                                    let member = Int(stack[slot])
                                    if member < graph.declarationCount {
                                        let number = bit[member]
                                        words[base + number / 64] |= 1 << UInt64(number % 64)
                                    }
                                    for edge in Int(offsets[member])..<Int(offsets[member + 1]) {
                                        let other = Int(component[Int(targets[edge])])
                                        guard other != Int(position) else { continue }
                                        let source = other * wordCount
                                        for word in 0..<wordCount { words[base + word] |= words[source + word] }
                                    }
                                }
                                stackCount = start
                            }
                        }
                    }
                }
            }
        }
        return (sets, component)
    }
}

/// A growing run of zeroed words, as a pointer (see ``DependencyClosure``'s
/// note on debug builds).
private final class Words {
    private var base = UnsafeMutablePointer<UInt64>.allocate(capacity: 0)
    private var capacity = 0
    private var count = 0

    /// Makes the run at least `count` words long (new words are zero) and
    /// returns its start, valid until the next call.
    func grow(to count: Int) -> UnsafeMutablePointer<UInt64> {
        if count > self.capacity {
            let capacity = Swift.max(count, self.capacity * 2, 1024)
            let larger = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity)
            larger.update(from: self.base, count: self.count)
            (larger + self.count).initialize(repeating: 0, count: capacity - self.count)
            self.base.deallocate()
            self.base = larger
            self.capacity = capacity
            self.count = capacity
        }
        return self.base
    }

    /// A copy of `count` words from `start`.
    func words(_ start: Int, count: Int) -> [UInt64] {
        Array(UnsafeBufferPointer(start: self.base + start, count: count))
    }

    deinit { self.base.deallocate() }
}

/// The graph of ``DependencyClosure``, as adjacency arrays: node `v`'s
/// successors are `targets[offsets[v]..<offsets[v + 1]]`. Nodes
/// `0..<n` are *include d*, `n..<2n` *include fully h* (`n + h`), and the
/// rest *name k* (`2n + k`), for a module of `n` declarations.
private struct Graph {
    var offsets: [Int32] = [0]
    var targets: [Int32] = []
    let declarationCount: Int
    var nodeCount: Int { self.offsets.count - 1 }

    init(index: ModuleIndex) {
        let count = index.declarationCount
        self.declarationCount = count
        /// The node that finding declaration `d` by a name leads to.
        func found(_ declaration: Int) -> Int32 {
            Int32(index.isMember[declaration] ? declaration : count + declaration)
        }
        // Include d: the header around it, what it mentions, and, for a
        // requirement, its witnesses (the declarations of its own names).
        for declaration in 0..<count {
            if let parent = index.parents[declaration] { self.targets.append(Int32(parent)) }
            for name in index.references[declaration] { self.targets.append(Int32(2 * count + name)) }
            if index.isRequirement[declaration] {
                for name in index.ownNames[declaration] { self.targets.append(Int32(2 * count + name)) }
            }
            self.offsets.append(Int32(self.targets.count))
        }
        // Include fully h: h itself and everything inside it (a member's
        // fully-included node is never reached: names lead to members' include nodes).
        for header in 0..<count {
            if !index.isMember[header] {
                self.targets.append(Int32(header))
                for member in index.contents[header] { self.targets.append(found(member)) }
            }
            self.offsets.append(Int32(self.targets.count))
        }
        // Name k: every declaration found under it.
        for name in 0..<index.nameCount {
            for declaration in index.byName[name] { self.targets.append(found(declaration)) }
            self.offsets.append(Int32(self.targets.count))
        }
    }
}
