// Version, status strings, errors, buffers.
import CFlowRT
import FlowRuntime
#if canImport(Glibc)
import Glibc
#endif

private let versionString: UnsafeMutablePointer<CChar> = strdup("\(FLOWRT_VERSION_MAJOR).\(FLOWRT_VERSION_MINOR).\(FLOWRT_VERSION_PATCH)")!

@_cdecl("flowrt_version_number")
public func flowrt_version_number() -> UInt32 {
    UInt32(FLOWRT_VERSION_MAJOR * 10000 + FLOWRT_VERSION_MINOR * 100 + FLOWRT_VERSION_PATCH)
}

@_cdecl("flowrt_version_string")
public func flowrt_version_string() -> UnsafePointer<CChar> {
    UnsafePointer(versionString)
}

private let statusTexts: [UnsafeMutablePointer<CChar>] = ([
    "ok", "invalid argument", "shape mismatch", "non-finite value", "invalid model",
    "unsupported", "I/O error", "cancelled", "out of memory", "solver incomplete", "internal error",
    "step size underflow",
    "unknown status",
] as [String]).map { strdup($0)! }

@_cdecl("flowrt_status_string")
public func flowrt_status_string(_ status: flowrt_status) -> UnsafePointer<CChar> {
    let i = Int(status.rawValue)
    return UnsafePointer(statusTexts[(i >= 0 && i < statusTexts.count - 1) ? i : statusTexts.count - 1])
}

@_cdecl("flowrt_last_error_message")
public func flowrt_last_error_message() -> UnsafePointer<CChar> {
    LastError.current
}

@_cdecl("flowrt_buffer_free")
public func flowrt_buffer_free(_ buffer: UnsafeMutableRawPointer?) {
    free(buffer)
}
