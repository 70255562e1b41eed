import XCTest
@testable import FlowRuntime

/// The PNG writer against published check values and an independent parse
/// of the file (chunk CRCs, stored deflate blocks, Adler-32, pixel bytes).
final class PNGTests: XCTestCase {
    func testChecksumsMatchPublishedCheckValues() {
        XCTAssertEqual(Checksum.crc32(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(Checksum.adler32(Array("Wikipedia".utf8)), 0x11E6_0398)
        XCTAssertEqual(Checksum.crc32([UInt8]()), 0)
        XCTAssertEqual(Checksum.adler32([UInt8](repeating: 255, count: 100_000)), adlerReference([UInt8](repeating: 255, count: 100_000)))
    }

    /// Textbook Adler-32 with a modulo after every byte.
    func adlerReference(_ b: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, s: UInt32 = 0
        for x in b { a = (a + UInt32(x)) % 65521; s = (s + a) % 65521 }
        return s << 16 | a
    }

    func be32(_ b: [UInt8], _ i: Int) -> UInt32 { b[i..<(i + 4)].reduce(0) { $0 << 8 | UInt32($1) } }

    func testFileDecodesToThePixels() throws {
        // 200 × 120 RGB = 72,120 raw bytes: two stored blocks.
        var img = PNGImage(width: 200, height: 120)
        for y in 0..<120 { for x in 0..<200 { img.set(x: x, y: y, (UInt8(x), UInt8(y), UInt8((x * y) & 255))) } }
        let f = img.encoded()
        XCTAssertEqual(Array(f.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var i = 8, chunks: [(String, [UInt8])] = []
        while i < f.count {
            let n = Int(be32(f, i)), type = String(decoding: f[(i + 4)..<(i + 8)], as: UTF8.self)
            let body = Array(f[(i + 8)..<(i + 8 + n)])
            XCTAssertEqual(be32(f, i + 8 + n), Checksum.crc32(Array(f[(i + 4)..<(i + 8 + n)])), type)
            chunks.append((type, body))
            i += 12 + n
        }
        XCTAssertEqual(chunks.map(\.0), ["IHDR", "IDAT", "IEND"])
        XCTAssertEqual(be32(chunks[0].1, 0), 200)
        XCTAssertEqual(be32(chunks[0].1, 4), 120)
        XCTAssertEqual(Array(chunks[0].1[8...]), [8, 2, 0, 0, 0])
        // zlib: header, stored blocks, Adler-32.
        let z = chunks[1].1
        XCTAssertEqual((Int(z[0]) << 8 | Int(z[1])) % 31, 0, "zlib header check bits")
        var raw: [UInt8] = [], p = 2, final = false
        while !final {
            final = z[p] & 1 == 1
            XCTAssertEqual(z[p] >> 1, 0, "stored block")
            let len = Int(z[p + 1]) | Int(z[p + 2]) << 8, nlen = Int(z[p + 3]) | Int(z[p + 4]) << 8
            XCTAssertEqual(len ^ 0xFFFF, nlen)
            raw += z[(p + 5)..<(p + 5 + len)]
            p += 5 + len
        }
        XCTAssertEqual(be32(z, p), adlerReference(raw))
        XCTAssertEqual(p + 4, z.count)
        XCTAssertEqual(raw.count, 120 * (1 + 600))
        for y in 0..<120 {
            XCTAssertEqual(raw[y * 601], 0)
            XCTAssertEqual(Array(raw[(y * 601 + 1)..<((y + 1) * 601)]), Array(img.pixels[(y * 600)..<((y + 1) * 600)]))
        }
    }

    func testWriteIsAtomicAndReportsErrors() throws {
        let path = NSTemporaryDirectory() + "flowrt-png-\(getpid()).png"
        try PNGImage(width: 3, height: 2).write(to: path)
        XCTAssertEqual(try FileIO.read(path), PNGImage(width: 3, height: 2).encoded())
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(path).tmp.\(getpid())"))
        try? FileManager.default.removeItem(atPath: path)
        XCTAssertThrowsError(try PNGImage(width: 1, height: 1).write(to: "/nonexistent-dir/x.png")) {
            guard case FlowError.io = $0 else { return XCTFail("\($0)") }
        }
    }
}
