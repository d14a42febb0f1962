#if canImport(Glibc)
import Glibc
#endif
import GatewayProtocol

/// Runs a system call that reports failure as -1 with `errno`, again while it
/// is interrupted by a signal (EINTR), and throws a `GatewayError`
/// (`.libraryFailure`) naming the call and the error otherwise.
@discardableResult
func systemCall<Result: FixedWidthInteger>(
    _ name: StaticString,
    fileID: StaticString = #fileID,
    line: Int = #line,
    _ body: () -> Result
) throws(GatewayError) -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno
        if code == EINTR { continue }
        throw GatewayError(.libraryFailure, "\(name) failed: \(String(cString: strerror(code))) (errno \(code))", fileID: fileID, line: line)
    }
}
