import GatewayDigest
import Testing

@Suite struct SHA256Tests {
    @Test func placeholder() throws {
        #expect(try SHA256.hash(Array("abc".utf8)).hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
