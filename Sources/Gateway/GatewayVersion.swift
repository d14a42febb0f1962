/// The gateway's software version, sent in hello replies and shown by `--version`.
public enum GatewayVersion {
    /// The version string.
    public static let current = "0.1.0"
}
