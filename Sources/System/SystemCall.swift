#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GatewayProtocol

// The one way the gateway and the client call the system, after swift-nio's
// `syscall` (Sources/NIOPosix/System.swift): a call that reports failure as -1
// with `errno` is made again while a signal interrupts it (EINTR), and any
// other failure becomes a `GatewayError` naming the call, what it was called
// on, and the error. The functions are inlinable and take their body, the
// error's subject and its code as non-escaping closures, so that a call that
// succeeds costs exactly the system call: nothing is allocated, no message is
// formatted, and not even the error code (a static of another module) is read.

/// Makes the system call `body` (again while EINTR interrupts it); returns its
/// result, or throws a `GatewayError` with `code` when it fails.
///
/// - Parameters:
///   - name: the call, as the error names it (`"connect"`, `"fcntl(F_SETFL)"`).
///   - subject: what it was called on (a path), for the error only.
///   - code: the error's code.
@inlinable
@inline(__always)
@discardableResult
public func systemCall<Result: FixedWidthInteger>(
    _ name: StaticString,
    on subject: @autoclosure () -> String = "",
    code: @autoclosure () -> GatewayError.Code = .libraryFailure,
    fileID: StaticString = #fileID,
    line: Int = #line,
    _ body: () -> Result
) throws(GatewayError) -> Result {
    // errno is never 0 after a failure, so no failure is taken as an outcome.
    try systemCallOutcome(name, on: subject(), code: code(), nilOn: 0, 0, fileID: fileID, line: line, body)!
}

/// Like `systemCall`, but a failure with `expected` is an outcome rather than
/// an error: it returns nil (for example `unlink` with ENOENT, when the file
/// being absent is as good as removing it).
@inlinable
@inline(__always)
public func systemCall<Result: FixedWidthInteger>(
    _ name: StaticString,
    on subject: @autoclosure () -> String = "",
    code: @autoclosure () -> GatewayError.Code = .libraryFailure,
    unless expected: Int32,
    fileID: StaticString = #fileID,
    line: Int = #line,
    _ body: () -> Result
) throws(GatewayError) -> Result? {
    try systemCallOutcome(name, on: subject(), code: code(), nilOn: expected, expected, fileID: fileID, line: line, body)
}

/// Like `systemCall`, for a call that must not wait (a non-blocking socket,
/// `MSG_DONTWAIT`): returns nil when it would have had to wait (EAGAIN or
/// EWOULDBLOCK).
@inlinable
@inline(__always)
public func nonBlockingSystemCall<Result: FixedWidthInteger>(
    _ name: StaticString,
    on subject: @autoclosure () -> String = "",
    code: @autoclosure () -> GatewayError.Code = .libraryFailure,
    fileID: StaticString = #fileID,
    line: Int = #line,
    _ body: () -> Result
) throws(GatewayError) -> Result? {
    try systemCallOutcome(name, on: subject(), code: code(), nilOn: EAGAIN, EWOULDBLOCK, fileID: fileID, line: line, body)
}

/// The loop behind the three: `body` again while EINTR interrupts it; nil
/// when it fails with `first` or `second`; any other failure thrown.
@inlinable
@inline(__always)
func systemCallOutcome<Result: FixedWidthInteger>(
    _ name: StaticString,
    on subject: @autoclosure () -> String,
    code: @autoclosure () -> GatewayError.Code,
    nilOn first: Int32,
    _ second: Int32,
    fileID: StaticString,
    line: Int,
    _ body: () -> Result
) throws(GatewayError) -> Result? {
    while true {
        let result = body()
        if result != -1 { return result }
        let number = errno
        if number == EINTR { continue }
        if number == first || number == second { return nil }
        throw systemCallError(name, on: subject(), errno: number, code: code(), fileID: fileID, line: line)
    }
}

/// The error for a failed system call: "`name` (`subject`) failed: reason (errno N)".
/// Out of line, so that formatting the message stays off the callers' fast paths.
@usableFromInline
@inline(never)
func systemCallError(
    _ name: StaticString,
    on subject: String,
    errno number: Int32,
    code: GatewayError.Code,
    fileID: StaticString,
    line: Int
) -> GatewayError {
    let call = subject.isEmpty ? "\(name)" : "\(name) (\(subject))"
    return GatewayError(code, "\(call) failed: \(String(cString: strerror(number))) (errno \(number))", fileID: fileID, line: line)
}

/// Removes the file at `path`; an absent file counts as removed. Returns
/// whether there was a file to remove.
@discardableResult
public func removeFile(
    _ path: String,
    code: GatewayError.Code = .libraryFailure,
    fileID: StaticString = #fileID,
    line: Int = #line
) throws(GatewayError) -> Bool {
    try systemCall("unlink", on: path, code: code, unless: ENOENT, fileID: fileID, line: line) { unlink(path) } != nil
}
