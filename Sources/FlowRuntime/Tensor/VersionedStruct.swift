/// Params structs of the C ABI carry their size in their first field
/// (`uint32_t struct_size`), and each release may append fields. A program
/// built against an older header passes an older size; the library must
/// accept every size some header has had, and nothing in between (a size in
/// between would cut an appended field, a pointer say, in half).
///
/// `VersionedStruct` holds that list for one struct and reads a caller's
/// struct of any listed version: the caller's first `struct_size` bytes over
/// the current defaults. The C layer (Sources/CAPI/CAPI.swift) uses it for
/// every params struct; it lives here so the tests can drive it with a
/// three-version struct before a real one exists.
public struct VersionedStruct<T> {
    /// Every size a public header has given the struct, oldest first; the
    /// last is `MemoryLayout<T>.size`, this library's own.
    public let knownSizes: [Int]
    /// The C name, for messages (e.g. "flowrt_solver_params").
    public let typeName: String

    /// - Parameter sizes: the sizes of older versions, in any order; the
    ///   current size is added. - Precondition: each is at least 4 (the
    ///   struct_size field) and below the current size.
    public init(olderSizes sizes: [Int] = [], typeName: String = "\(T.self)") {
        let current = MemoryLayout<T>.size
        precondition(sizes.allSatisfy { $0 >= MemoryLayout<UInt32>.size && $0 < current },
                     "older sizes \(sizes) of \(typeName) must lie in 4..<\(current)")
        knownSizes = Array(Set(sizes)).sorted() + [current]
        self.typeName = typeName
    }

    /// The sizes as a message lists them: "12", "12 or 24", "12, 24 or 40".
    public var knownSizesText: String {
        let s = knownSizes.map(String.init)
        return s.count == 1 ? s[0] : s.dropLast().joined(separator: ", ") + " or " + s.last!
    }

    /// The `struct_size` at the start of `p`, checked against the list.
    /// - Throws: `.invalidArgument` naming `name`, the size and the sizes known.
    public func size(at p: UnsafeRawPointer, _ name: String) throws -> Int {
        let size = Int(p.loadUnaligned(as: UInt32.self))
        guard knownSizes.contains(size) else {
            throw FlowError.invalidArgument(
                "\(name)->struct_size = \(size); set it to sizeof(\(typeName)) (this library knows \(knownSizesText)); use flowrt_*_default_params()")
        }
        return size
    }

    /// The caller's struct: `defaults` with the caller's first `struct_size`
    /// bytes copied over them (so fields of later versions keep their defaults).
    public func read(_ p: UnsafeRawPointer, defaults: T, _ name: String) throws -> T {
        let size = try size(at: p, name)
        var out = defaults
        withUnsafeMutableBytes(of: &out) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: p, count: size))
        }
        return out
    }

    /// Writes `defaults` into the caller's struct up to its `struct_size`,
    /// keeping that size in its first field. - Returns: the size.
    @discardableResult
    public func write(_ defaults: T, to p: UnsafeMutableRawPointer, _ name: String) throws -> Int {
        let size = try size(at: UnsafeRawPointer(p), name)
        var d = defaults
        withUnsafeBytes(of: &d) { src in p.copyMemory(from: src.baseAddress!, byteCount: size) }
        p.storeBytes(of: UInt32(size), as: UInt32.self)
        return size
    }
}
