@testable import GatewayClientRuntime
import GatewayTestSupport
import Testing

/// The table of awaited requests behaves as a dictionary by id, whichever of
/// its two places (the one request in flight, or the others) holds an entry.
@Suite struct AwaitedRequestsTests {
    @Test func oneRequestInFlight() {
        let table = AwaitedRequests<String>()
        #expect(table.isEmpty)
        #expect(table[1] == nil)
        table.insert(1, "one")
        #expect(table.count == 1)
        #expect(table[1] == "one")
        #expect(table[2] == nil)
        table.update(1) { $0 += "!" }
        #expect(table[1] == "one!")
        #expect(table.removeValue(forKey: 2) == nil)
        #expect(table.removeValue(forKey: 1) == "one!")
        #expect(table.isEmpty)
        #expect(table.removeValue(forKey: 1) == nil)
    }

    /// Against a dictionary driven with the same operations: inserts,
    /// replacements, updates and removals in many orders, with up to 40
    /// requests in flight.
    @Test(arguments: [1, 2, 3, 4, 5])
    func manyRequestsMatchADictionary(seed: UInt64) {
        var generator = SeededRandom(seed: seed)
        let table = AwaitedRequests<Int>()
        var reference: [UInt64: Int] = [:]
        var nextID: UInt64 = 0
        for step in 0..<5_000 {
            let existing = Array(reference.keys)
            switch generator.next() % 6 {
            case 0, 1:
                // A new request, as a connection makes them (ids increase);
                // at 40 in flight, the oldest is answered first.
                if reference.count >= 40, let oldest = reference.keys.min() {
                    #expect(table.removeValue(forKey: oldest) == reference.removeValue(forKey: oldest))
                }
                nextID += 1
                table.insert(nextID, step)
                reference[nextID] = step
            case 2:
                // A reply, for any awaited request (replies come in any order).
                guard let id = existing.randomElement(using: &generator) else { continue }
                #expect(table.removeValue(forKey: id) == reference.removeValue(forKey: id))
            case 3:
                let id = existing.randomElement(using: &generator) ?? nextID + 1
                table.update(id) { $0 = -step }
                if reference[id] != nil { reference[id] = -step }
            case 4:
                guard let id = existing.randomElement(using: &generator) else { continue }
                table.insert(id, step)
                reference[id] = step
            default:
                // A reply nobody awaits (given up, or for a store).
                #expect(table.removeValue(forKey: nextID + 1) == nil)
                #expect(table[nextID + 1] == nil)
            }
            #expect(table.count == reference.count)
            #expect(table.isEmpty == reference.isEmpty)
            var visited: [UInt64: Int] = [:]
            table.forEach { id, value in
                #expect(visited[id] == nil, "each request is visited once")
                visited[id] = value
            }
            #expect(visited == reference)
            for id in existing { #expect(table[id] == reference[id]) }
            #expect(Set(table.ids { $0 % 2 == 0 }) == Set(reference.filter { $0.value % 2 == 0 }.keys))
        }
    }
}
