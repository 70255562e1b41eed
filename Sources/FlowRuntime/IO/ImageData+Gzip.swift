#if canImport(Glibc)
import Glibc
#endif
import CZlib

extension ImageData {
    /// Largest IDX payload read from a gzip file (16 GiB): the header's
    /// extents are checked against it before anything is allocated.
    static let _maxGzipPayload = 1 << 34

    /// Reads a gzip-compressed IDX file (e.g. Debian's
    /// `train-images-idx3-ubyte.gz`) through zlib's `gzread`.
    ///
    /// The IDX header is inflated first; the data size it claims is checked
    /// (at most `_maxGzipPayload` bytes) before the data buffer is
    /// allocated, and the stream must end exactly after that many bytes.
    /// - Throws: `.io` when the file cannot be opened, is not valid gzip,
    ///   is truncated, holds trailing data or a bad IDX header;
    ///   `.unsupported` for an IDX element type other than 0x08.
    /// - Complexity: O(compressed + inflated size); one copy of the data.
    static func _readGzipIDX(path: String) throws -> PixelArray {
        guard let file = gzopen(path, "rb") else { throw FlowError.io("cannot open '\(path)' (gzip)") }
        defer { gzclose(file) }
        gzbuffer(file, 1 << 17)

        /// Reads exactly `count` bytes into `buffer` (in ≤ 1 GiB calls).
        func readExactly(_ buffer: UnsafeMutableRawBufferPointer, what: String) throws {
            var done = 0
            while done < buffer.count {
                let n = Swift.min(buffer.count - done, 1 << 30)
                let got = gzread(file, buffer.baseAddress! + done, UInt32(n))
                if got < 0 { throw FlowError.io("gzip data is corrupt (\(_gzipError(file))) while reading \(what)") }
                if got == 0 { throw FlowError.io("gzip data ends after \(done) of \(buffer.count) bytes of \(what)") }
                done += Int(got)
            }
        }

        var magic = [UInt8](repeating: 0, count: 4)
        try magic.withUnsafeMutableBytes { try readExactly($0, what: "the IDX magic") }
        guard magic[0] == 0, magic[1] == 0 else { throw FlowError.io("not an IDX file (bad magic) inside the gzip data") }
        guard magic[2] == 0x08 else {
            throw FlowError.unsupported("IDX element type 0x\(String(magic[2], radix: 16)) (supported: 0x08, unsigned bytes)")
        }
        let rank = Int(magic[3])
        guard (1...4).contains(rank) else { throw FlowError.io("IDX rank \(rank) (expected 1...4)") }
        var extents = [UInt8](repeating: 0, count: 4 * rank)
        try extents.withUnsafeMutableBytes { try readExactly($0, what: "the IDX header") }
        var shape: [Int] = []
        for d in 0..<rank {
            var n = 0
            for b in extents[(4 * d)..<(4 * d + 4)] { n = n << 8 | Int(b) }
            shape.append(n)
        }
        guard let count = shape.checkedElementCount, count <= _maxGzipPayload else {
            throw FlowError.io("IDX header claims shape \(shape): more than \(_maxGzipPayload) bytes")
        }
        var bytes = try HostMemory.array(repeating: UInt8(0), count: count, for: "reading '\(path)'")
        try bytes.withUnsafeMutableBytes { try readExactly($0, what: "the IDX data (shape \(shape))") }
        var extra: UInt8 = 0
        let tail = gzread(file, &extra, 1)
        if tail < 0 { throw FlowError.io("gzip data is corrupt (\(_gzipError(file))) at its end") }
        if tail > 0 { throw FlowError.io("gzip data continues after the \(count) bytes of shape \(shape)") }
        return PixelArray(shape: shape, bytes: bytes)
    }

    /// zlib's message for the last error on `file`.
    static func _gzipError(_ file: gzFile) -> String {
        var code: Int32 = 0
        guard let message = gzerror(file, &code) else { return "zlib error" }
        return "zlib: \(String(cString: message))"
    }
}
