#if canImport(Glibc)
import Glibc
#endif

/// The one checked path for memory whose size comes from a request (a batch
/// size, a file's contents): outputs and scratch of the solvers, the
/// likelihood, the SDE sampler, the C ABI and the CLI.
///
/// Swift's own allocations (arrays, `UnsafeMutablePointer.allocate`) stop
/// the process when the system refuses them; a library embedded in someone
/// else's process must not. Everything sized by a request therefore either
/// runs in bounded blocks (`Transport.blockSize`) or is allocated here, where
/// a refusal becomes `FlowError.outOfMemory` naming the call and the bytes.
public enum HostMemory {
    /// Largest single allocation attempted, 2^46 bytes (64 TiB): anything
    /// larger is refused before asking the system (no machine has it, and
    /// sizes near 2^63 would overflow the allocator's own arithmetic).
    public static let maxBytes = 1 << 46

    /// Bytes of `count` elements of `T`.
    /// - Throws: `.outOfMemory` naming `call` when the product overflows or
    ///   exceeds `maxBytes`, `.invalidArgument` for a negative count.
    public static func byteCount<T>(_ count: Int, of type: T.Type, for call: String) throws -> Int {
        guard count >= 0 else { throw FlowError.invalidArgument("\(call): negative element count \(count)") }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !overflow, bytes <= maxBytes else {
            throw FlowError.outOfMemory("\(call): \(UInt(count)) elements of \(MemoryLayout<T>.stride) bytes exceed the 2^46-byte limit of one allocation")
        }
        return bytes
    }

    /// Uninitialised memory for `count` elements of `T`, 64-byte aligned
    /// (posix_memalign), released with `free`.
    /// - Throws: `.outOfMemory` naming `call` and the byte count.
    static func _allocate<T>(_ count: Int, of type: T.Type, for call: String) throws -> UnsafeMutablePointer<T> {
        let bytes = try byteCount(count, of: type, for: call)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, Swift.max(bytes, 1)) == 0, let raw else {
            throw FlowError.outOfMemory("\(call): cannot allocate \(bytes) bytes")
        }
        return raw.bindMemory(to: T.self, capacity: Swift.max(count, 1))
    }

    /// Checks that `count` elements of `T` can be allocated now: the bytes
    /// are requested through the checked path and released at once. Used
    /// before building a Swift array of that size (an `Array` cannot report
    /// a refused allocation): the array then gets memory the system has
    /// just granted. Another thread may take it meanwhile; that race is the
    /// price of returning Swift arrays from a Swift API.
    /// - Throws: `.outOfMemory` naming `call` and the byte count.
    public static func reserve<T>(_ count: Int, of type: T.Type, for call: String) throws {
        free(try _allocate(count, of: type, for: call))
    }

    /// `count` copies of `value` in a Swift array, reserved first (see `reserve`).
    /// - Throws: `.outOfMemory` naming `call` and the byte count.
    public static func array<T>(repeating value: T, count: Int, for call: String) throws -> [T] {
        try reserve(count, of: T.self, for: call)
        return [T](repeating: value, count: count)
    }
}

/// Owned, checked, uninitialised-then-filled memory for `count` elements
/// (freed when the buffer is released). For trivial element types.
public final class HostBuffer<Element>: @unchecked Sendable {
    /// The first element.
    public let pointer: UnsafeMutablePointer<Element>
    /// Number of elements.
    public let count: Int

    /// - Throws: `.outOfMemory` naming `call` and the byte count.
    public init(count: Int, for call: String) throws {
        pointer = try HostMemory._allocate(count, of: Element.self, for: call)
        self.count = count
    }

    /// `count` elements, each `value`.
    public convenience init(repeating value: Element, count: Int, for call: String) throws {
        try self.init(count: count, for: call)
        pointer.initialize(repeating: value, count: count)
    }

    deinit { free(pointer) }

    /// The elements as a buffer.
    public var buffer: UnsafeMutableBufferPointer<Element> { UnsafeMutableBufferPointer(start: pointer, count: count) }
}
