#if canImport(Glibc)
import Glibc
#endif

/// A file written piece by piece into a temporary file beside its path and
/// renamed over the path by `commit()`, so a failure or an interruption
/// never leaves a truncated file (as `FileIO.writeAtomically`, streamed).
/// Released without `commit()`, the temporary file is removed.
public final class AtomicFileWriter {
    /// The final path.
    public let path: String
    private let temporary: String
    private var file: UnsafeMutablePointer<FILE>?
    /// Bytes written so far.
    public private(set) var bytesWritten = 0

    /// Creates the temporary file (unique, mode 0644).
    /// - Throws: `.io` naming the path when it cannot be created.
    public init(path: String) throws {
        self.path = path
        var template = Array("\(path).tmp.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        temporary = String(cString: template)
        guard fd >= 0 else { throw FlowError.io("cannot create '\(temporary)': \(String(cString: strerror(errno)))") }
        fchmod(fd, 0o644)
        guard let f = fdopen(fd, "wb") else {
            close(fd)
            unlink(temporary)
            throw FlowError.io("cannot open '\(temporary)': \(String(cString: strerror(errno)))")
        }
        file = f
    }

    deinit {
        if let file {
            fclose(file)
            unlink(temporary)
        }
    }

    /// Appends bytes. - Throws: `.io` naming the path (disk full, …).
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let file else { throw FlowError.io("'\(path)' is already committed") }
        guard bytes.count == 0 || fwrite(bytes.baseAddress, 1, bytes.count, file) == bytes.count else {
            throw FlowError.io("cannot write '\(path)' (after \(bytesWritten) bytes): \(String(cString: strerror(errno)))")
        }
        bytesWritten += bytes.count
    }

    /// Appends bytes. - Throws: `.io` naming the path.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Flushes, syncs and renames the temporary file over `path`.
    /// - Throws: `.io` naming the path.
    public func commit() throws {
        guard let file else { throw FlowError.io("'\(path)' is already committed") }
        self.file = nil
        let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
        let closed = fclose(file) == 0
        guard flushed, closed else {
            unlink(temporary)
            throw FlowError.io("cannot write '\(path)': \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw FlowError.io("cannot rename '\(temporary)' to '\(path)': \(reason)")
        }
    }
}
