import GatewayProtocol

/// Which master serves each of the 16384 slots of a Redis Cluster, as read
/// from `CLUSTER SHARDS` (Redis 7) or `CLUSTER SLOTS` (older servers), and
/// corrected by `MOVED` redirects between two reads.
///
/// A value type without I/O: `RedisClusterRouter` reads the replies and asks
/// this map where a slot lives; the parsing and the updates are tested on
/// their own (Tests/GatewayTests/ClusterSlotMapTests.swift).
public struct ClusterSlotMap: Sendable, Equatable {
    /// The masters, in the order the reply listed them (a slot names one by index).
    public private(set) var masters: [RedisURL.Endpoint]
    /// Every node the reply named, masters and replicas: where to ask for the map next time.
    public private(set) var nodes: [RedisURL.Endpoint]
    /// For each slot, the index of its master in `masters`, or `unassigned`.
    private var owners: [UInt16]

    static let unassigned = UInt16.max

    /// An empty map: no slot has a master.
    public init() {
        self.masters = []
        self.nodes = []
        self.owners = Array(repeating: Self.unassigned, count: ClusterSlot.count)
    }

    /// The master that serves `slot`, if the map knows one.
    public func master(for slot: ClusterSlot) -> RedisURL.Endpoint? {
        self.masterIndex(for: slot).map { self.masters[$0] }
    }

    /// The index in `masters` of the master that serves `slot`.
    public func masterIndex(for slot: ClusterSlot) -> Int? {
        let owner = self.owners[Int(slot.value)]
        return owner == Self.unassigned ? nil : Int(owner)
    }

    /// The number of slots that have a master (16384 in a healthy cluster).
    public var assignedSlotCount: Int { self.owners.count { $0 != Self.unassigned } }

    /// The slots `master` serves, as ranges.
    public func slotRanges(of master: RedisURL.Endpoint) -> [ClosedRange<Int>] {
        guard let index = self.masters.firstIndex(of: master) else { return [] }
        var ranges: [ClosedRange<Int>] = []
        var start: Int? = nil
        for slot in 0...ClusterSlot.count {
            let owned = slot < ClusterSlot.count && self.owners[slot] == UInt16(index)
            if owned, start == nil { start = slot }
            if !owned, let first = start {
                ranges.append(first...(slot - 1))
                start = nil
            }
        }
        return ranges
    }

    /// Whether every slot has the same master in `other` (replicas and the
    /// order of the masters aside).
    public func hasSameOwners(as other: ClusterSlotMap) -> Bool {
        if self.masters == other.masters { return self.owners == other.owners }
        for slot in 0..<ClusterSlot.count {
            let mine = self.owners[slot] == Self.unassigned ? nil : self.masters[Int(self.owners[slot])]
            let theirs = other.owners[slot] == Self.unassigned ? nil : other.masters[Int(other.owners[slot])]
            if mine != theirs { return false }
        }
        return true
    }

    /// Records that `slot` now lives on `endpoint` (a `MOVED` redirect),
    /// adding the endpoint as a master when the map did not know it.
    public mutating func move(_ slot: ClusterSlot, to endpoint: RedisURL.Endpoint) {
        let index = self.addMaster(endpoint)
        self.owners[Int(slot.value)] = UInt16(index)
    }

    private mutating func addMaster(_ endpoint: RedisURL.Endpoint) -> Int {
        if let index = self.masters.firstIndex(of: endpoint) { return index }
        self.masters.append(endpoint)
        if !self.nodes.contains(endpoint) { self.nodes.append(endpoint) }
        return self.masters.count - 1
    }

    private mutating func assign(_ range: ClosedRange<Int>, to endpoint: RedisURL.Endpoint) throws {
        guard range.lowerBound >= 0, range.upperBound < ClusterSlot.count else {
            throw Self.malformed("the slot range \(range) is outside 0...16383")
        }
        let index = UInt16(self.addMaster(endpoint))
        for slot in range { self.owners[slot] = index }
    }

    private mutating func addNode(_ endpoint: RedisURL.Endpoint) {
        if !self.nodes.contains(endpoint) { self.nodes.append(endpoint) }
    }

    // MARK: Parsing

    /// The map from a `CLUSTER SHARDS` reply (RESP2: each shard a flat
    /// array of field names and values, `slots` a flat list of range bounds,
    /// `nodes` a list of flat arrays). A shard's master is its node whose
    /// `role` is `master`, preferring one whose `health` is `online` (after a
    /// failover the failed master is still listed as a master until it
    /// rejoins as a replica). `defaultHost` replaces an endpoint Redis does
    /// not know (`?` or empty). With `usesTLSPort`, a node's `tls-port` is
    /// used instead of its `port`.
    public static func parseShards(_ reply: RESPValue, defaultHost: String, usesTLSPort: Bool = false) throws -> ClusterSlotMap {
        guard let shards = reply.array else { throw Self.malformed("CLUSTER SHARDS answered \(reply)") }
        var map = ClusterSlotMap()
        for shard in shards {
            let fields = try Self.fields(shard)
            guard let slots = fields["slots"]?.array, let nodes = fields["nodes"]?.array else {
                throw Self.malformed("a shard has no slots or nodes: \(shard)")
            }
            guard slots.count % 2 == 0 else { throw Self.malformed("a shard's slot list has an odd length") }
            var master: (endpoint: RedisURL.Endpoint, online: Bool)? = nil
            for node in nodes {
                let node = try Self.fields(node)
                let portField = usesTLSPort ? "tls-port" : "port"
                guard let port = Self.integer(node[portField]), (1...65535).contains(port) else { continue }
                var host = node["endpoint"]?.string ?? ""
                if host.isEmpty || host == "?" { host = node["ip"]?.string ?? "" }
                if host.isEmpty || host == "?" { host = defaultHost }
                let endpoint = RedisURL.Endpoint.tcp(host: host, port: port)
                map.addNode(endpoint)
                guard node["role"]?.string == "master" else { continue }
                let online = node["health"]?.string == "online"
                if master == nil || (online && master?.online == false) { master = (endpoint, online) }
            }
            guard let master else { continue }
            for pair in stride(from: 0, to: slots.count, by: 2) {
                guard let first = Self.integer(slots[pair]), let last = Self.integer(slots[pair + 1]), first <= last else {
                    throw Self.malformed("a shard's slot range is not two ordered numbers")
                }
                try map.assign(first...last, to: master.endpoint)
            }
        }
        return map
    }

    /// The map from a `CLUSTER SLOTS` reply: each element is
    /// `[first, last, [host, port, id, ...], replicas...]`.
    public static func parseSlots(_ reply: RESPValue, defaultHost: String) throws -> ClusterSlotMap {
        guard let ranges = reply.array else { throw Self.malformed("CLUSTER SLOTS answered \(reply)") }
        var map = ClusterSlotMap()
        for range in ranges {
            guard let parts = range.array, parts.count >= 3,
                let first = parts[0].integer, let last = parts[1].integer, first <= last
            else { throw Self.malformed("a slot range is not [first, last, master, ...]: \(range)") }
            var endpoints: [RedisURL.Endpoint] = []
            for node in parts[2...] {
                guard let fields = node.array, fields.count >= 2, let port = fields[1].integer, (1...65535).contains(port) else {
                    throw Self.malformed("a node is not [host, port, ...]: \(node)")
                }
                var host = fields[0].string ?? ""
                if host.isEmpty || host == "?" { host = defaultHost }
                endpoints.append(.tcp(host: host, port: Int(port)))
            }
            for endpoint in endpoints { map.addNode(endpoint) }
            try map.assign(Int(first)...Int(last), to: endpoints[0])
        }
        return map
    }

    /// A RESP2 map: a flat array of alternating names and values.
    private static func fields(_ value: RESPValue) throws -> [String: RESPValue] {
        guard let elements = value.array, elements.count % 2 == 0 else {
            throw Self.malformed("expected a flat array of names and values, got \(value)")
        }
        var fields: [String: RESPValue] = [:]
        for pair in stride(from: 0, to: elements.count, by: 2) {
            guard let name = elements[pair].string else { throw Self.malformed("a field name is not a string: \(elements[pair])") }
            fields[name] = elements[pair + 1]
        }
        return fields
    }

    /// An integer reply, or a bulk string of digits (some fields come as either).
    private static func integer(_ value: RESPValue?) -> Int? {
        switch value {
        case .integer(let number)?: Int(number)
        case .bulkString?, .simpleString?: value?.string.flatMap { Int($0) }
        default: nil
        }
    }

    private static func malformed(_ message: String) -> GatewayError {
        GatewayError(.backendError, "unreadable cluster topology: \(message)")
    }
}
