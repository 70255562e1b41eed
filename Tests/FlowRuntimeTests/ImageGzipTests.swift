import CZlib
import Foundation
import XCTest
@testable import FlowRuntime

/// Gzip-compressed IDX files (Debian's dataset-fashion-mnist ships
/// `*-ubyte.gz`): `ImageData.read(path:)` / `readIDX` inflate them.
final class ImageGzipTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "flowrt-gzip-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    /// Writes `bytes` gzip-compressed through zlib.
    func writeGzip(_ bytes: [UInt8], to path: String) throws {
        let file = try XCTUnwrap(gzopen(path, "wb"))
        let written = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
        XCTAssertEqual(Int(written), bytes.count)
        XCTAssertEqual(gzclose(file), Z_OK)
    }

    let images = PixelArray(shape: [3, 4, 5], bytes: (0..<60).map { UInt8(($0 * 37) % 256) })

    func testGzipIDXRoundTrips() throws {
        let path = directory + "/images-idx3-ubyte.gz"
        try writeGzip(ImageData.encodeIDX(images), to: path)
        XCTAssertNotEqual(Array(try FileIO.read(path)), ImageData.encodeIDX(images), "the file is compressed")
        XCTAssertEqual(try ImageData.read(path: path), images)
        XCTAssertEqual(try ImageData.readIDX(path: path), images)
        let labels = PixelArray(shape: [7], bytes: [9, 2, 1, 1, 6, 1, 4])
        try writeGzip(ImageData.encodeIDX(labels), to: path)
        XCTAssertEqual(try ImageData.read(path: path), labels)
    }

    func testBadGzipIDXThrows() throws {
        func expectIO(_ path: String, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try ImageData.read(path: path), what, file: file, line: line) { error in
                guard case FlowError.io(let m) = error else { return XCTFail("\(what): \(error)", file: file, line: line) }
                XCTAssertTrue(m.contains(path), "\(what): \(m)", file: file, line: line)
            }
        }
        let good = ImageData.encodeIDX(images)
        let path = directory + "/bad.gz"
        try writeGzip(Array(good.dropLast()), to: path); expectIO(path, "one data byte short")
        try writeGzip(good + [0], to: path); expectIO(path, "one byte too many")
        try writeGzip(Array(good[0..<10]), to: path); expectIO(path, "truncated header")
        try writeGzip([1, 2, 8, 1, 0, 0, 0, 1, 5], to: path); expectIO(path, "bad magic")
        try writeGzip([0, 0, 8, 0], to: path); expectIO(path, "rank 0")
        // 2^31−1 cubed bytes claimed: rejected before any allocation.
        try writeGzip([0, 0, 8, 3, 0x7F, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 1], to: path)
        expectIO(path, "absurd extents")
        // The compressed stream cut in half.
        try writeGzip(ImageData.encodeIDX(PixelArray(shape: [50, 28, 28], bytes: (0..<39200).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) })), to: path)
        let compressed = try FileIO.read(path)
        try FileIO.writeAtomically(Array(compressed.prefix(compressed.count / 2)), to: path)
        expectIO(path, "truncated gzip stream")
        try writeGzip([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0], to: path)
        XCTAssertThrowsError(try ImageData.read(path: path)) { error in
            guard case FlowError.unsupported = error else { return XCTFail("float32 IDX: \(error)") }
        }
    }

    /// Debian's dataset-fashion-mnist, when installed (`make deps`).
    func testFashionMNISTTestSetFromDebian() throws {
        let root = "/usr/share/datasets/fashion-mnist/"
        guard FileManager.default.fileExists(atPath: root + "t10k-images-idx3-ubyte.gz") else {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        let images = try ImageData.read(path: root + "t10k-images-idx3-ubyte.gz")
        let labels = try ImageData.read(path: root + "t10k-labels-idx1-ubyte.gz")
        XCTAssertEqual(images.shape, [10000, 28, 28])
        XCTAssertEqual(try images.sampleShape(), [1, 28, 28])
        XCTAssertEqual(labels.shape, [10000])
        XCTAssertEqual(Array(labels.bytes.prefix(5)), [9, 2, 1, 1, 6])  // ankle boot, pullover, trouser, trouser, shirt
        var perClass = [Int](repeating: 0, count: 10)
        for l in labels.bytes { perClass[Int(l)] += 1 }
        XCTAssertEqual(perClass, [Int](repeating: 1000, count: 10))
        let mean = Double(images.bytes.reduce(0) { $0 + Int($1) }) / Double(images.bytes.count)
        XCTAssertEqual(mean, 72.9, accuracy: 1.5)  // Fashion-MNIST's mean pixel is about 0.286 · 255
    }
}
