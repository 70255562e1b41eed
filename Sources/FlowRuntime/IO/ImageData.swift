#if canImport(Glibc)
import Glibc
#endif

/// An N-dimensional array of bytes in row-major order: 8-bit images
/// `[n, H, W]` or `[n, C, H, W]`, or labels `[n]`, as read from IDX or
/// `.npy` files.
public struct PixelArray: Sendable, Equatable {
    /// Extents, outermost (the sample index) first.
    public var shape: [Int]
    /// The elements in row-major order.
    public var bytes: [UInt8]

    /// - Precondition: `bytes.count` is the product of `shape`.
    public init(shape: [Int], bytes: [UInt8]) {
        precondition(shape.checkedElementCount == bytes.count, "\(bytes.count) bytes do not fill shape \(shape)")
        self.shape = shape
        self.bytes = bytes
    }

    /// Number of samples (the first extent; 1 for a rank-0 array).
    public var count: Int { shape.first ?? 1 }

    /// The per-sample image shape `[C, H, W]`: `[1, H, W]` for `[n, H, W]`
    /// data, `[C, H, W]` for `[n, C, H, W]`.
    /// - Throws: `.shapeMismatch` for another rank, or for a sample of more
    ///   than Int.max pixels (a file of zero images may claim any extents).
    public func sampleShape() throws -> [Int] {
        let sample: [Int]
        switch shape.count {
        case 3: sample = [1, shape[1], shape[2]]
        case 4: sample = Array(shape.dropFirst())
        default: throw FlowError.shapeMismatch("image data has shape \(shape); expected [n, H, W] or [n, C, H, W]")
        }
        guard sample.checkedElementCount != nil else {
            throw FlowError.shapeMismatch("image data has shape \(shape): a sample of \(sample) has more than Int.max pixels")
        }
        return sample
    }
}

/// Readers for 8-bit image data sets and the dequantization that turns
/// pixels into a continuous density (DESIGN.md §5).
///
/// Formats:
/// - IDX (MNIST, Fashion-MNIST): a big-endian magic `00 00 08 r` (unsigned
///   bytes, r dimensions: 0x00000803 images `[n, H, W]`, 0x00000801 labels
///   `[n]`), r big-endian 32-bit extents, then the bytes. Files may be
///   gzip-compressed, like the `*-ubyte.gz` files of Debian's
///   `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`): `read`
///   and `readIDX` inflate them with zlib; `decodeIDX` (bytes in memory)
///   reports gzip data as `.unsupported`.
/// - `.npy`: uint8 (`|u1`) arrays read as bytes, or any dtype `NPY.decode`
///   reads (float32/float64) holding integers in 0...255.
///
/// Every size a header claims is checked against the file before anything
/// is allocated for it; a malformed or hostile file is a thrown `FlowError`.
public enum ImageData {
    /// The `RandomStream` stream tag of dequantization noise.
    public static let dequantizationStream: UInt32 = RandomStream.Purpose.dequantization.rawValue

    // MARK: IDX

    /// Decodes an IDX file image of unsigned bytes (type code 0x08).
    /// - Throws: `.io` for a bad magic, a truncated header or a data size
    ///   that differs from the product of the extents; `.unsupported` for
    ///   gzip data or another element type.
    public static func decodeIDX(_ bytes: [UInt8]) throws -> PixelArray {
        if bytes.count >= 2, bytes[0] == 0x1F, bytes[1] == 0x8B {
            throw FlowError.unsupported("IDX data in memory is gzip-compressed; read the file with ImageData.read(path:), which inflates it, or gunzip it")
        }
        guard bytes.count >= 4, bytes[0] == 0, bytes[1] == 0 else { throw FlowError.io("not an IDX file (bad magic)") }
        guard bytes[2] == 0x08 else {
            throw FlowError.unsupported("IDX element type 0x\(String(bytes[2], radix: 16)) (supported: 0x08, unsigned bytes)")
        }
        let rank = Int(bytes[3])
        guard (1...4).contains(rank) else { throw FlowError.io("IDX rank \(rank) (expected 1...4)") }
        let dataStart = 4 + 4 * rank
        guard bytes.count >= dataStart else { throw FlowError.io("IDX file truncated in its header (\(bytes.count) bytes)") }
        var shape: [Int] = []
        for d in 0..<rank {
            let o = 4 + 4 * d
            shape.append(Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]))
        }
        guard let count = shape.checkedElementCount, count == bytes.count - dataStart else {
            throw FlowError.io("IDX data holds \(bytes.count - dataStart) bytes; shape \(shape) needs \(shape.checkedElementCount.map(String.init) ?? "more than Int.max")")
        }
        return PixelArray(shape: shape, bytes: Array(bytes[dataStart...]))
    }

    /// Encodes bytes as an IDX file image (type 0x08).
    /// - Precondition: rank 1...4, extents below 2³¹.
    public static func encodeIDX(_ array: PixelArray) -> [UInt8] {
        precondition((1...4).contains(array.shape.count) && array.shape.allSatisfy { $0 < 1 << 31 })
        var out: [UInt8] = [0, 0, 0x08, UInt8(array.shape.count)]
        for n in array.shape { out += [UInt8(n >> 24 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] }
        return out + array.bytes
    }

    /// Reads an IDX file, uncompressed or gzip-compressed.
    /// - Throws: as `decodeIDX`, with the path; `.io` when it cannot be read
    ///   or its gzip data is corrupt, truncated or followed by extra bytes.
    public static func readIDX(path: String) throws -> PixelArray {
        let bytes = try FileIO.read(path)
        do {
            if _isGzip(bytes) { return try _readGzipIDX(path: path) }
            return try decodeIDX(bytes)
        } catch let error as FlowError { throw error._imageDataPrefixed(path) }
    }

    /// Whether `bytes` start with the gzip magic 1F 8B.
    static func _isGzip(_ bytes: [UInt8]) -> Bool { bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B }

    /// Writes an IDX file (atomically).
    public static func writeIDX(_ array: PixelArray, to path: String) throws {
        try FileIO.writeAtomically(encodeIDX(array), to: path)
    }

    // MARK: .npy

    /// Decodes a `.npy` file image of pixels: uint8 (`|u1`, read as bytes
    /// without a Double copy), or a dtype `NPY.decode` reads whose values
    /// are all integers in 0...255.
    /// - Throws: what `NPY.decode` throws; `.io` for a uint8 data size that
    ///   differs from the shape, `.invalidArgument` for a value outside 0...255.
    public static func decodeNPY(_ bytes: [UInt8]) throws -> PixelArray {
        if let array = try _decodeUInt8NPY(bytes) { return array }
        let numeric = try NPY.decode(bytes)
        var out = [UInt8](repeating: 0, count: numeric.values.count)
        for (i, v) in numeric.values.enumerated() {
            guard v >= 0, v <= 255, v == v.rounded(.down) else {
                throw FlowError.invalidArgument(".npy element \(i) is \(v); pixels must be integers in 0...255")
            }
            out[i] = UInt8(v)
        }
        return PixelArray(shape: numeric.shape, bytes: out)
    }

    /// Reads a `.npy` file of pixels. - Throws: as `decodeNPY`, with the path.
    public static func readNPY(path: String) throws -> PixelArray {
        let bytes = try FileIO.read(path)
        do { return try decodeNPY(bytes) } catch let error as FlowError { throw error._imageDataPrefixed(path) }
    }

    /// Reads IDX (plain or gzip-compressed) or `.npy` image data, recognised
    /// by the file's magic bytes.
    /// - Throws: as `readIDX` / `readNPY`.
    public static func read(path: String) throws -> PixelArray {
        let bytes = try FileIO.read(path)
        do {
            if _isGzip(bytes) { return try _readGzipIDX(path: path) }
            if bytes.count >= 6, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) { return try decodeNPY(bytes) }
            return try decodeIDX(bytes)
        } catch let error as FlowError { throw error._imageDataPrefixed(path) }
    }

    /// A uint8 `.npy` (descr `|u1`, `u1`, `<u1`, `>u1`), or nil for other
    /// dtypes. NPY's reader has no uint8 element type and decodes to
    /// Double; this reads the preamble itself and reuses `NPY.parseHeader`
    /// for the dict (descr rewritten to one it knows, only to get
    /// `fortran_order` and `shape`).
    static func _decodeUInt8NPY(_ bytes: [UInt8]) throws -> PixelArray? {
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else { return nil }
        let headerStart = bytes[6] == 1 ? 10 : 12
        guard bytes[6] >= 1, bytes[6] <= 3, bytes.count >= headerStart else { return nil }  // NPY.decode reports it
        var headerLength = 0
        for i in stride(from: headerStart - 1, through: 8, by: -1) { headerLength = headerLength << 8 | Int(bytes[i]) }
        guard headerLength <= NPY.maxHeaderLength, headerStart + headerLength <= bytes.count else { return nil }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        var rewritten: String? = nil
        for quote in ["'", "\""] {
            for descr in ["|u1", "u1", "<u1", ">u1", "=u1"] where header.contains("\(quote)\(descr)\(quote)") {
                rewritten = header.replacing("\(quote)\(descr)\(quote)", with: "'<f4'", maxReplacements: 1)
            }
        }
        guard let rewritten else { return nil }
        let (_, _, fortran, shape) = try NPY.parseHeader(rewritten)
        let dataStart = headerStart + headerLength
        guard let count = shape.checkedElementCount, count == bytes.count - dataStart else {
            throw FlowError.io(".npy data holds \(bytes.count - dataStart) bytes; shape \(shape) of u1 needs \(shape.checkedElementCount.map(String.init) ?? "more than Int.max")")
        }
        let data = Array(bytes[dataStart...])
        return PixelArray(shape: shape, bytes: fortran ? NPY.reorder(data, shape: shape, fromFortran: true) : data)
    }

    // MARK: Dequantization and bits per dimension

    /// Uniform dequantization and scaling of 8-bit images:
    /// y = (k + u)/128 − 1 with u ~ U[0, 1) per pixel, drawn from
    /// `RandomStream(seed, dequantizationStream, firstIndex + i)` for sample
    /// i, so a sample's noise depends only on (seed, its index). y lies in
    /// [−1, 1) (a value that rounds to 1 in float32 is set to 1⁻).
    /// - Parameters:
    ///   - images: `[n, H, W]` or `[n, C, H, W]` pixels.
    ///   - firstIndex: the data-set index of `images`' first sample.
    /// - Returns: `[n, C·H·W]` (the flow ABI's layout).
    /// - Throws: `.shapeMismatch` for another rank.
    /// - Complexity: one uniform draw per pixel.
    public static func dequantize(_ images: PixelArray, seed: UInt64, firstIndex: UInt64 = 0) throws -> Tensor {
        let d = try images.sampleShape().elementCount
        let n = images.count
        var out = [Float](repeating: 0, count: n * d)
        let below1 = Float(1).nextDown
        for i in 0..<n {
            var rng = RandomStream(seed: seed, stream: dequantizationStream, index: firstIndex &+ UInt64(i))
            for j in 0..<d {
                let z = Double(images.bytes[i * d + j]) + rng.nextUniform()
                out[i * d + j] = Swift.min(Float(z / 128 - 1), below1)
            }
        }
        return Tensor(shape: [n, d], scalars: out)
    }

    /// Pixels scaled to [−1, 1) without noise: y = (k + ½)/128 − 1, the
    /// centres of the dequantization cells (for plots and sanity checks).
    /// - Returns: `[n, C·H·W]`. - Throws: `.shapeMismatch` for another rank.
    public static func scaled(_ images: PixelArray) throws -> Tensor {
        let d = try images.sampleShape().elementCount
        return Tensor(shape: [images.count, d], scalars: images.bytes.map { (Float($0) + 0.5) / 128 - 1 })
    }

    /// Bits per dimension of the discrete 8-bit data from the model's log
    /// density ln p_y(y) of a dequantized, scaled image y = z/128 − 1 in
    /// d dimensions: bpd = −ln p_y(y) / (d ln 2) + 7 (7 = log₂ 128, the
    /// change of variables from z to y). Averaged over data and noise it is
    /// an upper bound on the discrete model's bits per dimension (Theis et
    /// al. 2016). A standard error of ln p_y scales by 1/(d ln 2).
    public static func bitsPerDimension(logDensity: Double, dimension d: Int) -> Double {
        precondition(d > 0, "dimension must be positive")
        return -logDensity / (Double(d) * log(2.0)) + 7
    }
}

extension FlowError {
    /// The same error with `path: ` before its message.
    fileprivate func _imageDataPrefixed(_ path: String) -> FlowError {
        switch self {
        case .invalidArgument(let m): return .invalidArgument("\(path): \(m)")
        case .shapeMismatch(let m): return .shapeMismatch("\(path): \(m)")
        case .nonFinite(let m): return .nonFinite("\(path): \(m)")
        case .invalidModel(let m): return .invalidModel("\(path): \(m)")
        case .unsupported(let m): return .unsupported("\(path): \(m)")
        case .io(let m): return .io("\(path): \(m)")
        case .cancelled(let m): return .cancelled("\(path): \(m)")
        case .outOfMemory(let m): return .outOfMemory("\(path): \(m)")
        }
    }
}
