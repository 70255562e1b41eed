import Foundation
import XCTest
@testable import FlowRuntime

/// The committed corpora of the parser fuzzers (fuzz/README.md) in every
/// `swift test`: each file decodes or throws a FlowError, never traps; what
/// decodes is self-consistent. regress-* files once crashed a parser.
/// (corpus-checkpoint is not here: its regression case still traps in
/// Trainer.loadCheckpoint, finding 1 of fuzz/README.md.)
final class ParserFuzzCorpusTests: XCTestCase {
    func files(_ corpus: String) throws -> [(String, [UInt8])] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let folder = root.appendingPathComponent("fuzz/\(corpus)")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        XCTAssertGreaterThanOrEqual(names.count, 5, corpus)
        return try names.map { ($0, try [UInt8](Data(contentsOf: folder.appendingPathComponent($0)))) }
    }

    func testNPYCorpus() throws {
        for (name, bytes) in try files("corpus-npy") {
            do {
                let a = try NPY.decode(bytes)
                XCTAssertEqual(a.shape.reduce(1, *), a.values.count, name)
            } catch is FlowError {}
        }
    }

    func testCSVCorpus() throws {
        for (name, bytes) in try files("corpus-csv") {
            for header in [false, true] {
                do {
                    let a = try CSV.decode(String(decoding: bytes, as: UTF8.self), header: header)
                    XCTAssertEqual(a.shape.reduce(1, *), a.values.count, name)
                } catch is FlowError {}
            }
        }
    }

    func testImageCorpus() throws {
        for (name, bytes) in try files("corpus-image") {
            for decode in [ImageData.decodeIDX, ImageData.decodeNPY] {
                guard let p = try? decode(bytes) else { continue }
                do {
                    let t = try ImageData.scaled(p)
                    XCTAssertEqual(t.scalars.count, p.bytes.count, name)
                    _ = try ImageData.dequantize(p, seed: 1)
                } catch is FlowError {}
            }
        }
    }
}
