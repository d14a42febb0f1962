/// What a key is the hash of: `[resultType, [argumentTypes], argument…]`.
///
/// `KeyBuilder` produces the canonical bytes of this value without going
/// through it (faster); this is the definition that `KeyBuilderTests` hold
/// `KeyBuilder` to.
struct KeyMaterial: Encodable {
    let result: String
    let argumentTypes: [String]
    let arguments: [any Encodable]

    func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        try container.encode(self.result)
        try container.encode(self.argumentTypes)
        for argument in self.arguments {
            try container.encode(argument)
        }
    }
}
