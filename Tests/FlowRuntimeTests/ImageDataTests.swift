import Foundation
import XCTest
@testable import FlowRuntime

/// IDX and uint8 .npy readers, hostile headers, dequantization and the
/// bits-per-dimension formula.
final class ImageDataTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.path + "/flowrt-imagedata-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = directory + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// 3 images of 2×4, pixel (i, r, c) = 37·i + 5·r + c (mod 256), with 0 and 255 present.
    let images: PixelArray = {
        var p = [UInt8](repeating: 0, count: 24)
        for i in 0..<24 {
            let value: Int = 37 * (i / 8) + 5 * (i % 8 / 4) + i % 4
            p[i] = UInt8(value % 256)
        }
        p[0] = 0; p[23] = 255
        return PixelArray(shape: [3, 2, 4], bytes: p)
    }()

    func testIDXRoundTripAndLayout() throws {
        // Hand-written header: magic 0x00000803, extents 3, 2, 4 big-endian.
        let bytes = ImageData.encodeIDX(images)
        XCTAssertEqual(Array(bytes[0..<16]), [0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 4])
        let path = try write(bytes, "images-idx3-ubyte")
        let read = try ImageData.readIDX(path: path)
        XCTAssertEqual(read, images)
        XCTAssertEqual(try read.sampleShape(), [1, 2, 4])
        XCTAssertEqual(try ImageData.read(path: path), images)
        // Labels: magic 0x00000801.
        let labels = PixelArray(shape: [5], bytes: [7, 0, 9, 1, 3])
        let lpath = try write([0, 0, 8, 1, 0, 0, 0, 5, 7, 0, 9, 1, 3], "labels-idx1-ubyte")
        XCTAssertEqual(try ImageData.readIDX(path: lpath), labels)
        try ImageData.writeIDX(labels, to: directory + "/written")
        XCTAssertEqual(try ImageData.readIDX(path: directory + "/written"), labels)
    }

    func expectError(_ bytes: [UInt8], _ what: String, io: Bool = true) throws {
        let path = try write(bytes, "bad")
        XCTAssertThrowsError(try ImageData.readIDX(path: path), what) { error in
            guard let e = error as? FlowError else { return XCTFail("\(what): not a FlowError: \(error)") }
            if io, case .io = e {} else if !io, case .unsupported = e {} else { XCTFail("\(what): \(e)") }
            XCTAssertTrue(e.message.contains(path), "\(what): message names the file: \(e.message)")
        }
    }

    func testHostileAndTruncatedIDXFilesThrow() throws {
        let good = ImageData.encodeIDX(images)
        try expectError(Array(good.dropLast()), "data one byte short")
        try expectError(good + [0], "one byte too many")
        try expectError(Array(good[0..<10]), "truncated in the header")
        try expectError([0, 0, 8], "shorter than the magic")
        try expectError([], "empty")
        // Claims 2^31−1 × 2^31−1 × 2^31−1 images: must be rejected before allocating.
        try expectError([0, 0, 8, 3, 0x7F, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3], "absurd extents")
        try expectError([0, 0, 8, 1, 0xFF, 0xFF, 0xFF, 0xFF], "2^32−1 labels, none present")
        try expectError([0, 0, 8, 0], "rank 0")
        try expectError([0, 0, 8, 200] + [UInt8](repeating: 0, count: 800), "rank 200")
        try expectError([1, 2, 8, 1, 0, 0, 0, 1, 5], "bad magic")
        try expectError([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0], "float32 IDX", io: false)
        // A file is inflated (ImageGzipTests); this one is a cut gzip header.
        try expectError([0x1F, 0x8B, 8, 0, 0, 0, 0, 0], "truncated gzip")
        XCTAssertThrowsError(try ImageData.decodeIDX([0x1F, 0x8B, 8, 0, 0, 0, 0, 0])) { error in
            guard case FlowError.unsupported = error else { return XCTFail("gzip bytes in memory: \(error)") }
        }
        XCTAssertThrowsError(try ImageData.readIDX(path: directory + "/missing")) { error in
            guard case FlowError.io = error else { return XCTFail("\(error)") }
        }
    }

    /// A .npy file written by hand (NumPy's layout: version 1.0, header padded to 64).
    func npy(descr: String, shape: String, fortran: Bool = false, data: [UInt8]) -> [UInt8] {
        var dict = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }"
        while (10 + dict.utf8.count + 1) % 64 != 0 { dict += " " }
        dict += "\n"
        let n = dict.utf8.count
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 0xFF), UInt8(n >> 8)] + Array(dict.utf8) + data
    }

    func testUInt8NPY() throws {
        let path = try write(npy(descr: "|u1", shape: "(3, 2, 4)", data: images.bytes), "images.npy")
        XCTAssertEqual(try ImageData.readNPY(path: path), images)
        XCTAssertEqual(try ImageData.read(path: path), images)
        // [n, C, H, W]
        let chw = PixelArray(shape: [3, 1, 2, 4], bytes: images.bytes)
        XCTAssertEqual(try ImageData.decodeNPY(npy(descr: "|u1", shape: "(3, 1, 2, 4)", data: images.bytes)), chw)
        XCTAssertEqual(try chw.sampleShape(), [1, 2, 4])
        // Fortran order [2, 3]: the file stores columns.
        let f = try ImageData.decodeNPY(npy(descr: "|u1", shape: "(2, 3)", fortran: true, data: [1, 4, 2, 5, 3, 6]))
        XCTAssertEqual(f, PixelArray(shape: [2, 3], bytes: [1, 2, 3, 4, 5, 6]))
        // Other integer-valued dtypes through NPY.
        let asFloat = NPY.encode(NumericArray(shape: [3, 2, 4], values: images.bytes.map(Double.init)))
        XCTAssertEqual(try ImageData.decodeNPY(asFloat), images)
        // Hostile or wrong: size mismatch, huge shape, out-of-range values.
        for (bytes, what) in [(npy(descr: "|u1", shape: "(3, 2, 4)", data: Array(images.bytes.dropLast())), "short"),
                              (npy(descr: "|u1", shape: "(4000000000, 4000000000, 4000000000)", data: [1]), "huge")] {
            XCTAssertThrowsError(try ImageData.decodeNPY(bytes), what) { error in
                guard case FlowError.io = error else { return XCTFail("\(what): \(error)") }
            }
        }
        XCTAssertThrowsError(try ImageData.decodeNPY(NPY.encode(NumericArray(shape: [2], values: [3, 256])))) { error in
            guard case FlowError.invalidArgument = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try ImageData.decodeNPY(NPY.encode(NumericArray(shape: [2], values: [3, 0.5]))))
    }

    func testDequantizationIsSeededAndInRange() throws {
        let a = try ImageData.dequantize(images, seed: 7)
        XCTAssertEqual(a.shape, [3, 8])
        XCTAssertEqual(a, try ImageData.dequantize(images, seed: 7))
        XCTAssertNotEqual(a, try ImageData.dequantize(images, seed: 8))
        for (y, k) in zip(a.scalars, images.bytes) {
            XCTAssertGreaterThanOrEqual(y, -1); XCTAssertLessThan(y, 1)
            // y = (k + u)/128 − 1 with u in [0, 1): k = floor(128 (y + 1)).
            XCTAssertEqual(Int((Double(y) + 1) * 128), Int(k), "pixel \(k) dequantized to \(y)")
        }
        // Noise is keyed by sample index: samples 1..2 alone with firstIndex 1 match.
        let tail = PixelArray(shape: [2, 2, 4], bytes: Array(images.bytes[8...]))
        XCTAssertEqual(try ImageData.dequantize(tail, seed: 7, firstIndex: 1).scalars, Array(a.scalars[8...]))
        // Extremes: all-0 and all-255 images over many draws stay in [−1, 1).
        let extremes = PixelArray(shape: [200, 4, 4], bytes: (0..<3200).map { $0 % 2 == 0 ? 0 : 255 })
        let e = try ImageData.dequantize(extremes, seed: 1)
        XCTAssertTrue(e.scalars.allSatisfy { $0 >= -1 && $0 < 1 })
        // Mean of u is ½: the average offset from the cell corner is 1/256 ± a few σ (σ = (1/128)/√(12·3200)).
        var sum = 0.0
        for (y, k) in zip(e.scalars, extremes.bytes) { sum += Double(y) + 1 - Double(k) / 128 }
        let mean = sum / 3200
        XCTAssertEqual(mean, 0.5 / 128, accuracy: 5 * (1.0 / 128) / (12.0 * 3200).squareRoot())
        XCTAssertThrowsError(try ImageData.dequantize(PixelArray(shape: [3], bytes: [1, 2, 3]), seed: 0))
        XCTAssertEqual(try ImageData.scaled(PixelArray(shape: [1, 1, 2], bytes: [0, 255])).scalars, [-1 + 0.5 / 128, 1 - 0.5 / 128])
    }

    func testBitsPerDimension() {
        // Uniform density on [−1, 1)^d: p_y = 2^−d, so −ln p_y = d ln 2 and bpd = 1 + 7 = 8 bits
        // (a model that knows nothing about 8-bit pixels needs all 8 bits).
        for d in [1, 784, 3072] {
            XCTAssertEqual(ImageData.bitsPerDimension(logDensity: -Double(d) * log(2.0), dimension: d), 8, accuracy: 1e-12)
        }
        // A density of 128^d on y (all mass in one dequantization cell): 0 bits.
        XCTAssertEqual(ImageData.bitsPerDimension(logDensity: 784 * log(128.0), dimension: 784), 0, accuracy: 1e-12)
    }
}
