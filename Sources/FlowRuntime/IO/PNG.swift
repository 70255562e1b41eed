#if canImport(Glibc)
import Glibc
#endif

/// A minimal PNG encoder for plots: 8-bit RGB, no interlacing, zlib stream
/// of stored (uncompressed) deflate blocks. Files are larger than a real
/// compressor's but valid everywhere and need no library.
///
/// Layout (PNG spec, RFC 2083; zlib RFC 1950; deflate RFC 1951): signature,
/// IHDR, one IDAT holding zlib(header 0x78 0x01, stored blocks of ≤ 65,535
/// bytes, Adler-32), IEND; every chunk ends with the CRC-32 of its type and data.
public struct PNGImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// Row-major RGB triples, top row first: `[height, width, 3]`.
    public var pixels: [UInt8]

    /// A `width × height` image filled with one colour.
    /// - Precondition: positive sizes below 2^15.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (255, 255, 255)) {
        precondition(width > 0 && height > 0 && width < 1 << 15 && height < 1 << 15)
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { pixels[3 * i] = fill.0; pixels[3 * i + 1] = fill.1; pixels[3 * i + 2] = fill.2 }
    }

    /// Sets pixel (x, y), y counted from the top; out-of-range is ignored.
    public mutating func set(x: Int, y: Int, _ rgb: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = 3 * (y * width + x)
        pixels[i] = rgb.0; pixels[i + 1] = rgb.1; pixels[i + 2] = rgb.2
    }

    /// The encoded file. - Complexity: O(width · height).
    public func encoded() -> [UInt8] {
        var raw = [UInt8]()
        raw.reserveCapacity(height * (3 * width + 1))
        for y in 0..<height {
            raw.append(0)  // filter type None
            raw += pixels[(3 * width * y)..<(3 * width * (y + 1))]
        }
        var zlib: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = Swift.min(65_535, raw.count - offset)
            let final: UInt8 = offset + n == raw.count ? 1 : 0
            zlib += [final, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            zlib += raw[offset..<(offset + n)]
            offset += n
        } while offset < raw.count
        zlib += Checksum.bigEndian(Checksum.adler32(raw))

        var ihdr = Checksum.bigEndian(UInt32(width)) + Checksum.bigEndian(UInt32(height))
        ihdr += [8, 2, 0, 0, 0]  // bit depth 8, colour type RGB, deflate, adaptive filters, no interlace
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        for (type, body) in [("IHDR", ihdr), ("IDAT", zlib), ("IEND", [])] {
            let t = Array(type.utf8)
            out += Checksum.bigEndian(UInt32(body.count)) + t + body
            out += Checksum.bigEndian(Checksum.crc32(t + body))
        }
        return out
    }

    /// Writes the file atomically (temporary file, then rename).
    /// - Throws: `.io` naming the path.
    public func write(to path: String) throws {
        try FileIO.writeAtomically(encoded(), to: path)
    }
}

/// CRC-32 (ISO-HDLC, polynomial 0xEDB88320 reflected) and Adler-32, used by
/// PNG and by training checkpoints.
enum Checksum {
    static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// CRC-32 of `bytes` ("123456789" → 0xCBF43926).
    static func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// Adler-32 of `bytes` ("Wikipedia" → 0x11E60398).
    static func adler32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var a: UInt32 = 1, b: UInt32 = 0
        var n = 0
        for x in bytes {
            a += UInt32(x); b += a
            n += 1
            if n == 5552 { a %= 65521; b %= 65521; n = 0 }
        }
        return (b % 65521) << 16 | (a % 65521)
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }
}
