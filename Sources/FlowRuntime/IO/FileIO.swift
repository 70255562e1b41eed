#if canImport(Glibc)
import Glibc
#endif

/// Whole-file reads and atomic writes for every file FlowRuntime touches
/// (ONNX models and external data, .npy, CSV, PNG, checkpoints), with the C
/// library only: FlowRuntime does not link Foundation.
enum FileIO {
    /// Reads `count` bytes at `offset` of `path` (the whole file when `count`
    /// is nil), checking the range against the file size before allocating.
    /// - Throws: `.io` when the file cannot be opened or read, or the range
    ///   lies outside the file.
    static func read(_ path: String, offset: Int = 0, count: Int? = nil) throws -> [UInt8] {
        guard let file = fopen(path, "rb") else {
            throw FlowError.io("cannot open '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var info = stat()
        guard fstat(fileno(file), &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw FlowError.io("'\(path)' is not a regular file")
        }
        let size = Int(info.st_size)
        let n = count ?? (size - offset)
        guard offset >= 0, n >= 0, offset <= size, n <= size - offset else {
            throw FlowError.io("'\(path)' has \(size) bytes; cannot read \(n) bytes at offset \(offset)")
        }
        guard fseeko(file, off_t(offset), SEEK_SET) == 0 else { throw FlowError.io("cannot seek in '\(path)'") }
        var bytes = try HostMemory.array(repeating: UInt8(0), count: n, for: "reading '\(path)'")
        let got = bytes.withUnsafeMutableBytes { fread($0.baseAddress, 1, n, file) }
        guard got == n else { throw FlowError.io("short read of '\(path)': \(got) of \(n) bytes") }
        return bytes
    }

    /// Writes `bytes` to a temporary file beside `path`, then renames it over
    /// `path`, so a failure never leaves a truncated file.
    /// - Throws: `.io` naming the path.
    ///   The temporary name is unique (mkstemp), so concurrent saves to one
    ///   path from several threads or processes never interleave: the last
    ///   rename wins with a complete file.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let writer = try AtomicFileWriter(path: path)
        try writer.write(bytes)
        try writer.commit()
    }

    /// The folder part of a path ("." for a bare file name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
