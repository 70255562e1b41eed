import Dispatch
import XCTest
@testable import FlowRuntime

/// Saves are atomic: concurrent saves of different models to one path leave
/// one complete, loadable file, never a mixture, and no temporary files.
final class AtomicWriteTests: XCTestCase {
    func testConcurrentSavesToOnePathLeaveOneCompleteFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowrt-atomic-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.onnx").path
        let models = try (0..<8).map { try VelocityMLP(dimension: 2, hiddenWidths: [64, 64], seed: UInt64($0)).makeModel() }
        let errors = Mutex()
        var failures = 0
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for _ in 0..<5 {
                do { try models[i].saveONNX(path: path) } catch { errors.withLock { failures += 1 } }
            }
        }
        XCTAssertEqual(failures, 0)
        let loaded = try Model.loadONNX(path: path)
        let x = Tensor(shape: [3, 2], scalars: [0.1, -0.2, 0.3, 0.7, -1, 2])
        let t = [0.2, 0.5, 0.9]
        let v = loaded.velocity(t: t, x: x)
        XCTAssertTrue(models.contains { $0.velocity(t: t, x: x) == v }, "the file is not one of the saved models")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["m.onnx"])
    }
}
