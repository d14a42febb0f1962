/// Where a value sits, for the encoder and the decoder: what is above it
/// (usually the encoder or decoder of the value around it) and the key (or
/// index) it has there; both nil at the root.
///
/// The coding path (`[any CodingKey]`) is put together from these only when it
/// is asked for: by an error's message, or by an `encode(to:)` or
/// `init(from:)` that reads `codingPath`. Built eagerly, it cost two arrays
/// for every value and a string for every array element's key ("Index 3"):
/// on a client's hit with a struct result, about a fifth of the decoding.
struct CodingPathNode {
    let parent: (any CodingPathParent)?
    let key: (any CodingKey)?

    var codingPath: [any CodingKey] {
        var path = self.parent?.codingPath ?? []
        if let key = self.key { path.append(key) }
        return path
    }
}

/// What can stand above a value in its coding path: an encoder or a decoder
/// (each stands for its own path), or a `CodingPathLink`.
protocol CodingPathParent: AnyObject {
    var codingPath: [any CodingKey] { get }
}

/// A node made into a parent: the entries of a dictionary hang from the
/// dictionary's own node (one object per dictionary, its path still made
/// only when asked for). Or a path made in advance, where a link to the
/// encoder above would be a reference cycle (`superEncoder`).
final class CodingPathLink: CodingPathParent {
    private let node: CodingPathNode?
    private let fixed: [any CodingKey]

    init(_ node: CodingPathNode) {
        self.node = node
        self.fixed = []
    }

    init(fixed codingPath: [any CodingKey]) {
        self.node = nil
        self.fixed = codingPath
    }

    var codingPath: [any CodingKey] { self.node?.codingPath ?? self.fixed }
}

/// An array element's coding key, "Index n", whose string is made only when asked for.
struct IndexKey: CodingKey {
    let index: Int
    init(_ index: Int) { self.index = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.index = intValue }
    var stringValue: String { "Index \(self.index)" }
    var intValue: Int? { self.index }
}

/// A dictionary key as a coding key, described (`"\(key)"`) only when asked for.
///
/// `@unchecked Sendable` (`CodingKey` requires `Sendable`) although a
/// dictionary's key type need not be: it lives only inside one synchronous
/// `encode` call, in the coding paths of that call's encoders.
struct DescribedKey<Key>: CodingKey, @unchecked Sendable {
    let key: Key
    init(_ key: Key) { self.key = key }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { nil }
    var stringValue: String { "\(self.key)" }
    var intValue: Int? { nil }
}
