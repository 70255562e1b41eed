// Shared machinery of the C ABI: handles, the thread-local error message,
// FlowError → flowrt_status, params-struct versioning, argument validation.
//
// Rule for every @_cdecl function: validate every pointer and size first,
// run the Swift call inside `guarded`, and never let a Swift error or a trap
// cross the boundary.
import CFlowRT
import FlowRuntime
#if canImport(Glibc)
import Glibc
#endif

// MARK: Errors

/// Thread-local last error message (a malloc'd C string per thread, freed
/// on thread exit). The only per-thread state of the library.
enum LastError {
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { free($0) }
        return k
    }()
    private static let empty: UnsafeMutablePointer<CChar> = strdup("")!

    static func set(_ message: String) {
        let old = pthread_getspecific(key)
        pthread_setspecific(key, strdup(message))
        free(old)
    }

    static var current: UnsafePointer<CChar> {
        if let p = pthread_getspecific(key) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
        return UnsafePointer(empty)
    }
}

extension FlowError {
    var status: flowrt_status {
        switch self {
        case .invalidArgument: return FLOWRT_INVALID_ARGUMENT
        case .shapeMismatch: return FLOWRT_SHAPE_MISMATCH
        case .nonFinite: return FLOWRT_NON_FINITE
        case .invalidModel: return FLOWRT_INVALID_MODEL
        case .unsupported: return FLOWRT_UNSUPPORTED
        case .io: return FLOWRT_IO_ERROR
        case .cancelled: return FLOWRT_CANCELLED
        case .outOfMemory: return FLOWRT_OUT_OF_MEMORY
        }
    }
}

/// Runs `body`, mapping a thrown `FlowError` to its status and recording the
/// message for `flowrt_last_error_message`. `function` prefixes the message.
@inline(__always)
func guarded(_ function: StaticString, _ body: () throws -> flowrt_status) -> flowrt_status {
    do {
        return try body()
    } catch let e as FlowError {
        LastError.set("\(function): \(e.message)")
        return e.status
    } catch {
        LastError.set("\(function): \(error)")
        return FLOWRT_INTERNAL
    }
}

/// Records a message for a non-error status the call returns anyway
/// (FLOWRT_SOLVER_INCOMPLETE).
func report(_ function: StaticString, _ status: flowrt_status, _ message: String) -> flowrt_status {
    LastError.set("\(function): \(message)")
    return status
}

// MARK: Validation

/// Non-NULL pointer, or `.invalidArgument` naming it.
@inline(__always)
func require<T>(_ p: T?, _ name: String) throws -> T {
    guard let p else { throw FlowError.invalidArgument("\(name) is NULL") }
    return p
}

/// A size_t as the caller passed it, for messages: C sizes are unsigned and
/// never print negative ("n = 18446744073709551615", not "n = -1").
func unsigned(_ n: Int) -> UInt { UInt(bitPattern: n) }

/// n · m without overflow and within 2^40 elements, or `.invalidArgument`.
func checkedProduct(_ n: Int, _ m: Int, _ what: String) throws -> Int {
    let (p, o) = n.multipliedReportingOverflow(by: m)
    guard n >= 0, m >= 0, !o, p < Limits.elements else {
        throw FlowError.invalidArgument("\(what): size \(unsigned(n)) × \(unsigned(m)) is too large (at most 2^40 elements)")
    }
    return p
}

/// A size_t count as Int: < 2^40, and > 0 when `allowZero` is false.
/// Batch sizes allow 0 (an empty batch is FLOWRT_OK and writes nothing);
/// dimensions and sizes of things that must exist do not.
func count(_ n: Int, _ name: String, allowZero: Bool = false) throws -> Int {
    // A size_t ≥ 2^63 arrives as a negative Int: it is too large, not negative.
    guard n >= 0, n < Limits.elements else {
        throw FlowError.invalidArgument("\(name) = \(unsigned(n)) is too large (the limit is 2^40 elements)")
    }
    guard n > 0 || allowZero else { throw FlowError.invalidArgument("\(name) = 0; it must be > 0") }
    return n
}

/// A batch size: 0 ≤ n < 2^40.
func batchCount(_ n: Int) throws -> Int { try count(n, "n", allowZero: true) }

/// A buffer of `count` elements, or `.invalidArgument` naming it when it is
/// NULL; NULL is accepted for an empty batch (count 0) and gives nil.
func buffer<T>(_ p: UnsafePointer<T>?, _ count: Int, _ name: String) throws -> UnsafePointer<T>? {
    if count == 0 { return p }
    return try require(p, name)
}

/// Every element finite, or `.nonFinite` naming the first bad index.
func requireFinite(_ p: UnsafePointer<Float>, _ n: Int, _ name: String) throws {
    if let i = UnsafeBufferPointer(start: p, count: n).firstNonFiniteIndex {
        throw FlowError.nonFinite("\(name)[\(i)] is \(p[i])")
    }
}

func requireFinite(_ p: UnsafePointer<Double>, _ n: Int, _ name: String) throws {
    for i in 0..<n where !p[i].isFinite {
        throw FlowError.nonFinite("\(name)[\(i)] is \(p[i])")
    }
}

/// The `struct_size` a caller wrote at the start of a versioned params
/// struct, checked to be one of the sizes a public header has given it
/// (`knownSizes`, see FlowRuntime's `VersionedStruct`; this library's
/// `sizeof` is always accepted).
func structSize<T>(_ p: UnsafeRawPointer, _ type: T.Type, knownSizes: [Int], _ name: String) throws -> Int {
    try versions(T.self, knownSizes).size(at: p, name)
}

/// A struct appended to once: its first public version's size (`firstSize`)
/// or this library's `sizeof`.
func structSize<T>(_ p: UnsafeRawPointer, _ type: T.Type, firstSize: Int, _ name: String) throws -> Int {
    try structSize(p, type, knownSizes: [firstSize], name)
}

/// Reads a versioned params struct: starts from `defaults`, then copies the
/// caller's first `struct_size` bytes. NULL means the defaults.
func readParams<T>(_ p: UnsafePointer<T>?, defaults: T, knownSizes: [Int], _ name: String) throws -> T {
    guard let p else { return defaults }
    return try versions(T.self, knownSizes).read(UnsafeRawPointer(p), defaults: defaults, name)
}

func readParams<T>(_ p: UnsafePointer<T>?, defaults: T, firstSize: Int, _ name: String) throws -> T {
    try readParams(p, defaults: defaults, knownSizes: [firstSize], name)
}

/// Writes `defaults` into the caller's struct up to its `struct_size`,
/// keeping the caller's struct_size.
func initParams<T>(_ p: UnsafeMutablePointer<T>?, defaults: T, knownSizes: [Int], _ name: String) throws -> flowrt_status {
    let p = try require(p, name)
    try versions(T.self, knownSizes).write(defaults, to: UnsafeMutableRawPointer(p), name)
    return FLOWRT_OK
}

func initParams<T>(_ p: UnsafeMutablePointer<T>?, defaults: T, firstSize: Int, _ name: String) throws -> flowrt_status {
    try initParams(p, defaults: defaults, knownSizes: [firstSize], name)
}

/// The versions of `T`: `sizes` (older versions; the current size among
/// them is ignored) plus `MemoryLayout<T>.size`.
private func versions<T>(_ type: T.Type, _ sizes: [Int]) -> VersionedStruct<T> {
    let current = MemoryLayout<T>.size
    return VersionedStruct<T>(olderSizes: sizes.filter { $0 != current }, typeName: "\(T.self)")
}

/// Runs a load of the file `path`, naming it in any error it throws
/// (unless the message already does).
func namingFile<T>(_ path: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as FlowError where !e.message.contains(path) {
        throw e.prefixed("'\(path)': ")
    }
}

// MARK: Handles

/// Boxes a Swift object as an opaque C handle (+1 retained).
@inline(__always)
func retainHandle<T: AnyObject>(_ object: T) -> OpaquePointer {
    OpaquePointer(Unmanaged.passRetained(object).toOpaque())
}

/// The object behind a handle (not retained), or `.invalidArgument` for NULL.
@inline(__always)
func object<T: AnyObject>(_ handle: OpaquePointer?, _ type: T.Type, _ name: String) throws -> T {
    guard let handle else { throw FlowError.invalidArgument("\(name) is NULL") }
    return Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
}

/// Releases a handle made by `retainHandle`; NULL is a no-op.
@inline(__always)
func releaseHandle<T: AnyObject>(_ handle: OpaquePointer?, _ type: T.Type) {
    guard let handle else { return }
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).release()
}

/// Copies a Swift byte array into malloc'd memory the caller frees with
/// flowrt_buffer_free.
func mallocCopy(_ bytes: [UInt8]) throws -> UnsafeMutableRawPointer {
    guard let p = malloc(Swift.max(bytes.count, 1)) else { throw FlowError.outOfMemory("malloc(\(bytes.count)) failed") }
    bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    return p
}

/// malloc'd NUL-terminated copy of a string.
func mallocString(_ s: String) throws -> UnsafeMutablePointer<CChar> {
    guard let p = strdup(s) else { throw FlowError.outOfMemory("strdup failed") }
    return p
}
