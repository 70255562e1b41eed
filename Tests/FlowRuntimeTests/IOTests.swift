import XCTest
@testable import FlowRuntime

/// .npy and CSV against files written by NumPy 2.4 (`np.save`,
/// `np.lib.format.write_array`), embedded as hex.
final class IOTests: XCTestCase {
    let expected = NumericArray(shape: [2, 3], values: [1.5, -2, 3.25, 0.125, Double(Float(1e-3)), -7])
    let header = "934e554d5059010076007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c2033292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a"
    var cFloat32: String { header + "0000c03f000000c0000050400000003e6f12833a0000e0c0" }
    let fortranFloat64 = "934e554d5059010076007b276465736372273a20273c6638272c2027666f727472616e5f6f72646572273a20547275652c20277368617065273a2028322c2033292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a000000000000f83f000000000000c03f00000000000000c0000000e04d62503f0000000000000a400000000000001cc0"
    let bigEndian = "934e554d5059010076007b276465736372273a20273e6634272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c2033292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a3fc00000c0000000405000003e0000003a83126fc0e00000"
    let version2 = "934e554d50590200740000007b276465736372273a20273c6634272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c2033292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a0000c03f000000c0000050400000003e6f12833a0000e0c0"

    func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = [], it = hex.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }

    func testReadsNumPyFiles() throws {
        for hex in [cFloat32, fortranFloat64, bigEndian, version2] {
            XCTAssertEqual(try NPY.decode(bytes(hex)), expected)
        }
    }

    func testWritesWhatNumPyWrites() throws {
        XCTAssertEqual(NPY.encode(expected, as: .float32), bytes(cFloat32))
        XCTAssertEqual(NPY.encode(expected, as: .float64, fortranOrder: true), bytes(fortranFloat64))
    }

    func testRoundTripThroughFiles() throws {
        let dir = FileManager.default.temporaryDirectory.path
        let a = NumericArray(shape: [3, 2, 4], values: (0..<24).map { Double($0) * 0.5 - 3 })
        for (type, fortran) in [(NPY.ElementType.float32, false), (.float64, true)] {
            let path = dir + "/flowrt-io-\(type.rawValue).npy"
            try NPY.write(a, as: type, fortranOrder: fortran, to: path)
            XCTAssertEqual(try NPY.read(path: path), a)
        }
        let csvPath = dir + "/flowrt-io.csv"
        let m = NumericArray(shape: [2, 3], values: [1, -2.5, 1e-8, 3, 4, 5])
        try CSV.write(m, header: ["a", "b", "c"], to: csvPath)
        XCTAssertEqual(try CSV.read(path: csvPath), m)
    }

    func testMalformedNPYIsAClearError() throws {
        var b = bytes(cFloat32)
        XCTAssertThrowsError(try NPY.decode(Array(b.dropLast(4)))) { XCTAssertTrue("\($0)".contains("needs 24")) }
        XCTAssertThrowsError(try NPY.decode(Array(b.prefix(9))))
        XCTAssertThrowsError(try NPY.decode([UInt8](repeating: 7, count: 100)))
        b[8] = 0xFF; b[9] = 0xFF  // header length beyond the file
        XCTAssertThrowsError(try NPY.decode(b))
        // Absurd shape: checked before allocating.
        let huge = String(decoding: bytes(cFloat32)[10..<128], as: UTF8.self).replacingOccurrences(of: "(2, 3)", with: "(99999999999, 99999999999)")
        var h = Array(bytes(cFloat32)[0..<10]); h += Array(huge.utf8)
        h[8] = UInt8(huge.utf8.count & 0xFF); h[9] = UInt8(huge.utf8.count >> 8)
        XCTAssertThrowsError(try NPY.decode(h))
        let unsupported = cFloat32.replacingOccurrences(of: "3c6634", with: "3c6332")  // '<c2'
        XCTAssertThrowsError(try NPY.decode(bytes(unsupported))) {
            guard case FlowError.unsupported = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try NPY.read(path: "/nonexistent/x.npy")) { guard case FlowError.io = $0 else { return XCTFail() } }
    }

    func testCSVParsing() throws {
        let a = try CSV.decode("x,y\n1, 2\n\n# comment\n3.5,-4e-1\r\n")
        XCTAssertEqual(a, NumericArray(shape: [2, 2], values: [1, 2, 3.5, -0.4]))
        XCTAssertThrowsError(try CSV.decode("1,2\n3\n")) { XCTAssertTrue("\($0)".contains("line 2")) }
        XCTAssertThrowsError(try CSV.decode("1,2\n3,abc\n")) { XCTAssertTrue("\($0)".contains("abc")) }
        XCTAssertThrowsError(try CSV.decode("a,b\n"))
        XCTAssertThrowsError(try a.points(dimension: 3))
        XCTAssertThrowsError(try CSV.decode("1,nan\n").points(dimension: 2))
        XCTAssertEqual(try a.points(dimension: 2).shape, [2, 2])
    }
}
