import Foundation
import XCTest
@testable import FlowRuntime

/// Image velocity networks exported from PyTorch (torchcfm and diffusers
/// U-Nets, a small DiT; Tests/ONNXData/images, made by its committed
/// script) import and match PyTorch at batch 1 and 3.
///
/// Tolerance: 1e-4 of the output's largest magnitude. float32 networks of
/// ~50 layers accumulate ~1e-6 relative rounding (onnxruntime differs from
/// PyTorch by ≤ 2e-6 on these files); a wrong op is off by O(1).
final class ImageNetworkTests: XCTestCase {
    static var folder: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ONNXData/images").path
    }

    struct Case {
        var batch: Int
        var t: [Double], x: [Float], xShape: [Int], context: [Float]?
        var output: [Float]
    }

    static func cases(_ file: String) throws -> [Case] {
        let url = URL(fileURLWithPath: folder).appendingPathComponent(file.replacingOccurrences(of: ".onnx", with: ".json"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        return (json["cases"] as! [[String: Any]]).map { c in
            var out = Case(batch: c["batch"] as! Int, t: [], x: [], xShape: [], context: nil, output: [])
            for i in c["inputs"] as! [[String: Any]] {
                let data = (i["data"] as! [NSNumber]).map { $0.doubleValue }
                switch i["name"] as! String {
                case "t": out.t = data
                case "x": out.x = data.map(Float.init); out.xShape = i["shape"] as! [Int]
                default: out.context = data.map(Float.init)
                }
            }
            let o = (c["outputs"] as! [[String: Any]])[0]
            out.output = (o["data"] as! [NSNumber]).map { $0.floatValue }
            if out.t.count == 1 && out.batch > 1 { out.t = [Double](repeating: out.t[0], count: out.batch) }
            return out
        }
    }

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".onnx") }.sorted()
    }

    func check(_ file: String) throws {
        let model: Model
        do { model = try Model.loadONNX(path: Self.folder + "/" + file) } catch { XCTFail("\(file): \(error)"); return }
        for c in try Self.cases(file) {
            XCTAssertEqual(model.graph.sampleShape, Array(c.xShape.dropFirst()), file)
            let v = model.velocity(t: c.t, x: Tensor(shape: c.xShape, scalars: c.x),
                                   context: c.context.map { Tensor(shape: [$0.count], scalars: $0) })
            let scale = c.output.map { abs($0) }.max()!
            let err = zip(v.scalars, c.output).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(err, 1e-4 * scale, "\(file) batch \(c.batch): max |v − PyTorch| = \(err), scale \(scale)")
        }
    }

    func testTinyNetworksMatchPyTorch() throws {
        let tiny = Self.files.filter { $0.contains("_tiny__") }
        XCTAssertEqual(tiny.count, 14)  // incl. the interpolating and pooling conv nets, the qkv[0]-indexing DiT and two multi-head U-Nets, two exports each
        for f in tiny { try check(f) }
    }

    func testFullNetworksMatchPyTorch() throws {
        let full = Self.files.filter { !$0.contains("_tiny__") }
        XCTAssertEqual(full.count, 14)  // incl. the two opset-23 exports (the Attention op)
        for f in full { try check(f) }
    }

    /// torch's GroupNorm expansion (Reshape [G, −1] → InstanceNormalization
    /// → Reshape back → Mul γ → Add β → SiLU) imports as one GroupNorm+SiLU
    /// also when the exporter computes the restoring Reshape's target as a
    /// Shape node after the InstanceNormalization (the dynamo exports):
    /// no standalone SiLU or per-channel affine is left beside GroupNorm.
    func testDynamoGroupNormExpansionFusesWithSiLU() throws {
        for (file, fused) in [("diffusers_unet__dynamo__opdefault.onnx", 17), ("tcfm_unet__dynamo__opdefault.onnx", 23),
                              ("diffusers_unet__legacy__op17.onnx", 17)] {
            let model = try Model.loadONNX(path: Self.folder + "/" + file)
            let kinds = model.graph.nodes.map { $0.operation.op.kindName }
            XCTAssertEqual(kinds.filter { $0 == "GroupNorm+SiLU" }.count, fused, file)
            XCTAssertEqual(kinds.filter { $0 == "silu" }.count, 0, file)
            XCTAssertEqual(kinds.filter { $0 == "GroupNorm" }.count + fused, file.hasPrefix("diffusers") ? 21 : 27, file)
        }
    }

    /// Flows over an image network: samples carry log-densities that a
    /// separate log-density pass reproduces (exact trace, d = 64), and
    /// Hutchinson's estimate agrees within its standard error.
    func testFlowOverImageNetwork() throws {
        let model = try Model.loadONNX(path: Self.folder + "/tcfm_unet_tiny__legacy__op17.onnx")
        let flow = try Flow(field: model)
        XCTAssertEqual(flow.dimension, 64)
        let samples = try flow.sample(count: 3, seed: 5, logDensity: .exact)
        XCTAssertTrue(samples.points.scalars.allSatisfy(\.isFinite))
        let exact = try flow.logDensity(points: samples.points, method: .exact)
        for (a, b) in zip(samples.logDensities!, exact.logDensities) {
            XCTAssertEqual(a, b, accuracy: 2e-2, "sampled vs evaluated log-density")
        }
        let hutch = try flow.logDensity(points: samples.points, method: .hutchinson(probes: 16, kind: .rademacher, seed: 3))
        for i in 0..<3 {
            let se = hutch.standardErrors![i]
            XCTAssertLessThanOrEqual(abs(hutch.logDensities[i] - exact.logDensities[i]), 4 * se + 1e-3,
                                     "Hutchinson \(hutch.logDensities[i]) ± \(se) vs exact \(exact.logDensities[i])")
        }
    }
}
