/// Errors FlowRuntime reports for misuse, malformed input and I/O. Solver
/// outcomes (max steps, non-finite states) are values, not errors.
///
/// Each case maps to one `flowrt_status` code in the C ABI; the message names
/// the offending argument, node or file.
public enum FlowError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A bad argument value (NULL, zero or negative size, out of range).
    case invalidArgument(String)
    /// Sizes or shapes that do not agree.
    case shapeMismatch(String)
    /// A NaN or infinity where finite numbers are required.
    case nonFinite(String)
    /// A malformed or inconsistent ONNX model.
    case invalidModel(String)
    /// A valid construct FlowRuntime does not implement (op, dtype, attribute).
    case unsupported(String)
    /// File system or encoding failure.
    case io(String)
    /// A progress callback asked to stop.
    case cancelled(String)
    /// An allocation larger than allowed, or that failed.
    case outOfMemory(String)

    public var message: String {
        switch self {
        case .invalidArgument(let m), .shapeMismatch(let m), .nonFinite(let m),
             .invalidModel(let m), .unsupported(let m), .io(let m),
             .cancelled(let m), .outOfMemory(let m):
            return m
        }
    }
    public var description: String { message }

    /// The same error with `prefix` before its message (e.g. the file it
    /// concerns).
    public func prefixed(_ prefix: String) -> FlowError {
        let m = prefix + message
        switch self {
        case .invalidArgument: return .invalidArgument(m)
        case .shapeMismatch: return .shapeMismatch(m)
        case .nonFinite: return .nonFinite(m)
        case .invalidModel: return .invalidModel(m)
        case .unsupported: return .unsupported(m)
        case .io: return .io(m)
        case .cancelled: return .cancelled(m)
        case .outOfMemory: return .outOfMemory(m)
        }
    }
}
