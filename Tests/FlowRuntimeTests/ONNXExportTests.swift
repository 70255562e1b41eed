import Foundation
import XCTest
@testable import FlowRuntime

/// import(export(g)) gives the same velocities and JVPs for native graphs;
/// export(import(f)) of the fixtures gives PyTorch's outputs again.
final class ONNXExportTests: XCTestCase {
    func roundTrip(_ model: Model) throws -> Model {
        let bytes = try model.onnxData()
        return try bytes.withUnsafeBytes { try Model.loadONNX(bytes: $0) }
    }

    func batch(_ d: Int, _ n: Int, seed: UInt64) -> (t: [Double], x: Tensor) {
        var rng = RandomStream(seed: seed, purpose: .initialization, index: 99)
        let t = (0..<n).map { _ in rng.nextUniform() }
        let x = (0..<(n * d)).map { _ in Float(4 * rng.nextUniform() - 2) }
        return (t, Tensor(shape: [n, d], scalars: x))
    }

    func testNativeNetworksSurviveExportAndImport() throws {
        let activations: [UnaryFunction] = [.silu, .gelu, .geluTanh, .tanh, .relu, .sigmoid, .selu, .elu(alpha: 0.7),
                                            .leakyRelu(slope: 0.1), .softplus(beta: 1, threshold: 20),
                                            .softplus(beta: 2, threshold: 10), .hardSigmoid(alpha: 0.3, beta: 0.4),
                                            .hardSwish, .clip(lower: -0.4, upper: 0.5), .mish]
        var configs: [VelocityMLP] = activations.map { VelocityMLP(dimension: 3, hiddenWidths: [16, 16], activation: $0, seed: 7) }
        configs.append(VelocityMLP(dimension: 4, hiddenWidths: [32, 32], timeEncoding: .sinusoidal(frequencies: 5), seed: 3))
        configs.append(VelocityMLP(dimension: 2, hiddenWidths: [24, 24, 24], residual: true, seed: 5))
        for config in configs {
            let model = try config.makeModel()
            let back = try roundTrip(model)
            let (t, x) = batch(config.dimension, 9, seed: 11)
            let err = model.velocity(t: t, x: x).maxAbsDifference(back.velocity(t: t, x: x))
            XCTAssertLessThanOrEqual(err, 1e-5, "\(config.activation) \(config.timeEncoding) residual \(config.residual)")
            let dv = zip(model.divergence(t: t, x: x), back.divergence(t: t, x: x)).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(dv, 1e-4, "divergence \(config.activation)")
        }
    }

    func testFusedActivationsComeBackFused() throws {
        for f: UnaryFunction in [.silu, .gelu, .softplus(beta: 1, threshold: 20), .softplus(beta: 2, threshold: 10), .relu] {
            let model = try VelocityMLP(dimension: 2, hiddenWidths: [8], activation: f).makeModel()
            let back = try roundTrip(model)
            // Concat axes may come back normalised (-1 → 0); compare the rest.
            func ops(_ m: Model) -> [FlowRuntime.Operation] {
                m.graph.nodes.map(\.operation).map { $0.kindName == "Concat" ? FlowRuntime.Operation.concat(axis: 0) : $0 }
            }
            XCTAssertEqual(ops(back), ops(model), "\(f)")
        }
    }

    func testMetadataIsWrittenUnderFlowrtPrefix() throws {
        let model = try Model(graph: try VelocityMLP(dimension: 2, hiddenWidths: [8]).makeGraph(),
                              metadata: ["flowrt.interpolant": "trig", "base": "standard_normal"])
        let back = try roundTrip(model)
        XCTAssertEqual(back.metadata["flowrt.interpolant"], "trig")
        XCTAssertEqual(back.metadata["flowrt.base"], "standard_normal")
        XCTAssertEqual(back.metadata["flowrt.dimension"], "2")
        XCTAssertEqual(back.metadata["flowrt.time_convention"], "t in [0,1], 0 = base, 1 = data")
    }

    func testFixturesSurviveImportExportImport() throws {
        for file in ONNXFixtures.files {
            let model = try Model.loadONNX(path: ONNXFixtures.folder + "/" + file)
            let back = try roundTrip(model)
            let ref = try ONNXFixtures.reference(file)
            let (x, t) = ONNXFixtures.samples(ref)
            let v = back.velocity(t: t, x: Tensor(shape: [x.count, model.dimension], scalars: x.flatMap { $0 }))
            let err = zip(v.scalars, ref.output).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(err, ref.tolerance, file)
        }
    }

    func testSaveIsAtomicAndReadable() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowrt-onnx-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("v.onnx").path
        let model = try VelocityMLP(dimension: 2, hiddenWidths: [8]).makeModel()
        try model.saveONNX(path: path)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["v.onnx"])
        let back = try Model.loadONNX(path: path)
        let (t, x) = batch(2, 3, seed: 1)
        XCTAssertEqual(model.velocity(t: t, x: x).maxAbsDifference(back.velocity(t: t, x: x)), 0, accuracy: 1e-6)
        XCTAssertThrowsError(try model.saveONNX(path: dir.path + "/missing/v.onnx")) { e in
            guard case FlowError.io = e else { return XCTFail("\(e)") }
        }
    }
}
