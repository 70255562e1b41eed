import Foundation
import XCTest
@testable import FlowRuntime

/// The reference exports in ../shared/fixtures/onnx (FLOWRT_FIXTURES
/// overrides): every file imports and matches PyTorch's outputs.
enum ONNXFixtures {
    static var folder: String {
        if let env = ProcessInfo.processInfo.environment["FLOWRT_FIXTURES"], !env.isEmpty { return env }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.deletingLastPathComponent().appendingPathComponent("shared/fixtures/onnx").path
    }

    static var files: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasSuffix(".onnx") }.sorted()
    }

    struct Reference {
        var x: [Float], xShape: [Int]
        var t: [Float], tShape: [Int]
        var xt: Bool
        var output: [Float]
        var tolerance: Float
        var batch: Int { xShape[0] }
    }

    /// The JSON beside `file`: inputs (x, t or one xt) and PyTorch's output.
    static func reference(_ file: String, in folder: String = folder) throws -> Reference {
        let url = URL(fileURLWithPath: folder).appendingPathComponent(file.replacingOccurrences(of: ".onnx", with: ".json"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let inputs = json["inputs"] as! [[String: Any]]
        func floats(_ d: [String: Any]) -> [Float] { (d["data"] as! [NSNumber]).map { $0.floatValue } }
        func shape(_ d: [String: Any]) -> [Int] { d["shape"] as! [Int] }
        let output = (json["outputs"] as! [[String: Any]])[0]
        let tol = Float((json["tolerance"] as? NSNumber)?.doubleValue ?? 1e-5)
        if inputs.count == 1 {
            let xt = floats(inputs[0]), s = shape(inputs[0])
            return Reference(x: xt, xShape: s, t: [], tShape: [], xt: true, output: floats(output), tolerance: tol)
        }
        let xi = inputs.first { ($0["name"] as! String) != "t" }!, ti = inputs.first { ($0["name"] as! String) == "t" }!
        return Reference(x: floats(xi), xShape: shape(xi), t: floats(ti), tShape: shape(ti), xt: false,
                         output: floats(output), tolerance: tol)
    }

    /// Per-sample x rows and times of a reference (a scalar t repeats).
    static func samples(_ r: Reference) -> (x: [[Float]], t: [Double]) {
        let n = r.batch
        if r.xt {
            let w = r.xShape[1]
            return ((0..<n).map { Array(r.x[($0 * w)..<($0 * w + w - 1)]) }, (0..<n).map { Double(r.x[$0 * w + w - 1]) })
        }
        let d = r.xShape[1]
        let t = r.t.count == 1 ? [Double](repeating: Double(r.t[0]), count: n) : r.t.map(Double.init)
        return ((0..<n).map { Array(r.x[($0 * d)..<($0 * d + d)]) }, t)
    }
}

final class ONNXImportTests: XCTestCase {
    func velocities(_ model: Model, _ x: [[Float]], _ t: [Double]) -> [[Float]] {
        let d = model.dimension
        let v = model.velocity(t: t, x: Tensor(shape: [x.count, d], scalars: x.flatMap { $0 }))
        return (0..<x.count).map { Array(v.scalars[($0 * d)..<($0 * d + d)]) }
    }

    func testEveryFixtureMatchesPyTorchAtBatch4And1And7() throws {
        let files = ONNXFixtures.files
        XCTAssertEqual(files.count, 40, "fixtures folder \(ONNXFixtures.folder)")
        for file in files {
            let path = ONNXFixtures.folder + "/" + file
            let model: Model
            do { model = try Model.loadONNX(path: path) } catch { XCTFail("\(file): \(error)"); continue }
            let ref = try ONNXFixtures.reference(file)
            let (x, t) = ONNXFixtures.samples(ref)
            let v4 = velocities(model, x, t)
            let got = v4.flatMap { $0 }
            XCTAssertEqual(got.count, ref.output.count, file)
            let err = zip(got, ref.output).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(err, ref.tolerance, "\(file): max |v − PyTorch| = \(err)")
            // Batch 1: each row alone; batch 7: rows repeated and permuted.
            for i in 0..<x.count {
                let one = velocities(model, [x[i]], [t[i]])[0]
                XCTAssertLessThanOrEqual(zip(one, v4[i]).map { abs($0 - $1) }.max()!, 1e-6, "\(file) batch 1 row \(i)")
            }
            let order = [3, 0, 2, 1, 0, 3, 2]
            let v7 = velocities(model, order.map { x[$0] }, order.map { t[$0] })
            for (k, i) in order.enumerated() {
                XCTAssertLessThanOrEqual(zip(v7[k], v4[i]).map { abs($0 - $1) }.max()!, 1e-6, "\(file) batch 7 row \(k)")
            }
        }
    }

    /// The fused patterns leave no expansion nodes behind.
    func testPatternsAreFused() throws {
        func ops(_ file: String) throws -> [String] {
            try Model.loadONNX(path: ONNXFixtures.folder + "/" + file).graph.nodes.map { $0.operation.kindName }
        }
        XCTAssertEqual(try ops("mlp_gelu__dynamo__op17.onnx"), ["Concat", "Linear", "Linear", "Linear", "Linear"])
        XCTAssertEqual(try ops("mlp_gelu__legacy__op17.onnx"), ["Concat", "Linear", "Linear", "Linear", "Linear"])
        XCTAssertEqual(try ops("mlp_softplus__dynamo__op17.onnx"), ["Concat", "Linear", "Linear", "Linear", "Linear"])
        XCTAssertEqual(try ops("mlp_silu__legacy__op17.onnx"), ["Concat", "Linear", "Linear", "Linear", "Linear"])
        let silu = try Model.loadONNX(path: ONNXFixtures.folder + "/mlp_silu__dynamo__op17.onnx").graph
        XCTAssertEqual(silu.nodes.filter { $0.operation == .linear(weightTransposed: true, activation: .silu) }.count, 3)
        let gelu = try Model.loadONNX(path: ONNXFixtures.folder + "/mlp_gelu__legacy__op17.onnx").graph
        XCTAssertEqual(gelu.nodes.filter { $0.operation == .linear(weightTransposed: true, activation: .gelu) }.count, 3)
    }

    /// Exact divergence of an imported network against a central
    /// finite-difference trace of its velocity (float32 steps: 2e-3 abs).
    func testImportedDivergenceMatchesFiniteDifferences() throws {
        for file in ["sinus_mlp__dynamo__op17.onnx", "resmlp_ln__legacy__op17.onnx", "mlp_gelu__dynamo__op17.onnx",
                     "mlp_silu_tscalar__legacy__op17.onnx"] {
            let model = try Model.loadONNX(path: ONNXFixtures.folder + "/" + file)
            let ref = try ONNXFixtures.reference(file)
            let (x, t) = ONNXFixtures.samples(ref)
            let d = model.dimension
            let div = model.divergence(t: t, x: Tensor(shape: [x.count, d], scalars: x.flatMap { $0 }))
            for i in 0..<x.count {
                var trace = 0.0
                let h: Float = 1e-2
                for j in 0..<d {
                    var plus = x[i], minus = x[i]
                    plus[j] += h
                    minus[j] -= h
                    let v = velocities(model, [plus, minus], [t[i], t[i]])
                    trace += Double(v[0][j] - v[1][j]) / Double(plus[j] - minus[j])
                }
                XCTAssertEqual(div[i], trace, accuracy: 2e-3 * Swift.max(1, abs(trace)), "\(file) row \(i)")
            }
        }
    }

    func testImportFromBufferNeedsAFolderForExternalData() throws {
        let path = ONNXFixtures.folder + "/mlp_relu__dynamo__op17.onnx"
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try Model.loadONNX(bytes: $0) }) { error in
            XCTAssertTrue("\(error)".contains("external"), "\(error)")
        }
        let model = try bytes.withUnsafeBytes { try Model.loadONNX(bytes: $0, directory: ONNXFixtures.folder) }
        XCTAssertEqual(model.dimension, 2)
        let legacy = try [UInt8](Data(contentsOf: URL(fileURLWithPath: ONNXFixtures.folder + "/mlp_relu__legacy__op17.onnx")))
        let m2 = try legacy.withUnsafeBytes { try Model.loadONNX(bytes: $0) }
        let ref = try ONNXFixtures.reference("mlp_relu__legacy__op17.onnx")
        let (x, t) = ONNXFixtures.samples(ref)
        XCTAssertEqual(velocities(model, x, t), velocities(m2, x, t))
    }

    /// Tests/ONNXData: our own small PyTorch exports (other widths,
    /// activations, t shapes and opsets 11–20; make_exports.py there).
    func testOwnPyTorchExportsMatch() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ONNXData").path
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".onnx") }.sorted()
        XCTAssertEqual(files.count, 8)
        for file in files {
            let model = try Model.loadONNX(path: folder + "/" + file)
            let ref = try ONNXFixtures.reference(file, in: folder)
            let (x, t) = ONNXFixtures.samples(ref)
            let got = velocities(model, x, t).flatMap { $0 }
            let err = zip(got, ref.output).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertEqual(got.count, ref.output.count, file)
            XCTAssertLessThanOrEqual(err, ref.tolerance, "\(file): max |v − PyTorch| = \(err)")
            if file.contains("softplus") {
                XCTAssertEqual(model.graph.nodes.map { $0.operation.kindName }, ["Concat", "Linear", "Linear", "Linear"], file)
            }
            if file.contains("layernorm") {
                XCTAssertTrue(model.graph.nodes.contains { $0.operation.kindName == "LayerNorm" }, "\(file): LayerNorm not fused")
            }
        }
    }

    func testHostCanNameTheInputs() throws {
        let path = ONNXFixtures.folder + "/mlp_silu__legacy__op17.onnx"
        XCTAssertNoThrow(try Model.loadONNX(path: path, options: .init(xName: "x", tName: "t")))
        XCTAssertThrowsError(try Model.loadONNX(path: path, options: .init(xName: "nope"))) { e in
            XCTAssertTrue("\(e)".contains("nope"))
        }
    }
}

/// LayerNorm written out in elementary ops imports as one `.layerNorm`
/// node and matches a direct evaluation of the formula.
final class ONNXLayerNormPatternTests: XCTestCase {
    typealias P = ONNXProtoModel

    func model(squareWithMul: Bool, opset: Int64) -> P {
        func n(_ op: String, _ i: [String], _ o: String, _ a: [String: P.Attribute] = [:]) -> P.Node {
            P.Node(opType: op, domain: "", name: o, inputs: i, outputs: [o], attributes: a)
        }
        func t(_ name: String, _ dims: [Int64], _ v: [Float]) -> P.Tensor {
            P.Tensor(name: name, dims: dims, dataType: 1, raw: nil, floats: v, int32s: [], int64s: [], doubles: [],
                     isExternal: false, external: [:])
        }
        let axesAttr: [String: P.Attribute] = opset >= 18 ? [:] : ["axes": .init(type: 7, f: nil, i: nil, s: nil, t: nil, floats: [], ints: [-1])]
        let axesInput = opset >= 18 ? ["axes"] : []
        var inits = [t("gamma", [3], [1.5, -0.5, 2]), t("beta", [3], [0.1, 0.2, -0.3]), t("eps", [], [1e-5]), t("two", [], [2])]
        if opset >= 18 {
            inits.append(P.Tensor(name: "axes", dims: [1], dataType: 7, raw: nil, floats: [], int32s: [], int64s: [-1],
                                  doubles: [], isExternal: false, external: [:]))
        }
        let nodes = [
            n("Concat", ["x", "t"], "xt", ["axis": .init(type: 2, f: nil, i: 1, s: nil, t: nil, floats: [], ints: [])]),
            n("ReduceMean", ["xt"] + axesInput, "m", axesAttr),
            n("Sub", ["xt", "m"], "d"),
            squareWithMul ? n("Mul", ["d", "d"], "d2") : n("Pow", ["d", "two"], "d2"),
            n("ReduceMean", ["d2"] + axesInput, "var", axesAttr),
            n("Add", ["var", "eps"], "ve"),
            n("Sqrt", ["ve"], "sd"),
            n("Div", ["d", "sd"], "nrm"),
            n("Mul", ["nrm", "gamma"], "sc"),
            n("Add", ["sc", "beta"], "y"),
            n("Gemm", ["y", "w"], "v", ["transB": .init(type: 2, f: nil, i: 1, s: nil, t: nil, floats: [], ints: [])]),
        ]
        inits.append(t("w", [2, 3], [1, 0, 0, 0, 1, 1]))
        return P(irVersion: 8, producer: "test", opsets: ["": opset],
                 graph: .init(nodes: nodes, initializers: inits,
                              inputs: [.init(name: "x", elementType: 1, dims: [nil, 2]), .init(name: "t", elementType: 1, dims: [nil, 1])],
                              outputs: [.init(name: "v", elementType: 1, dims: [nil, 2])]),
                 metadata: [])
    }

    func testExpandedLayerNormIsFusedAndCorrect() throws {
        for (mul, opset) in [(false, Int64(17)), (true, 17), (false, 18)] {
            let bytes = model(squareWithMul: mul, opset: opset).serialized()
            let m = try bytes.withUnsafeBytes { try Model.loadONNX(bytes: $0) }
            XCTAssertEqual(m.graph.nodes.map { $0.operation.kindName }, ["Concat", "LayerNorm", "Linear"], "mul \(mul) opset \(opset)")
            let x: [Float] = [0.3, -1.2], t = 0.7
            let xt = x.map(Double.init) + [t]
            let mean = xt.reduce(0, +) / 3
            let variance = xt.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 3
            let gamma = [1.5, -0.5, 2.0], beta = [0.1, 0.2, -0.3]
            let y = (0..<3).map { (xt[$0] - mean) / (variance + 1e-5).squareRoot() * gamma[$0] + beta[$0] }
            let v = m.velocity(t: [t], x: Tensor(shape: [1, 2], scalars: x))
            XCTAssertEqual(Double(v.scalars[0]), y[0], accuracy: 1e-5)
            XCTAssertEqual(Double(v.scalars[1]), y[1] + y[2], accuracy: 1e-5)
        }
    }
}

/// Mod of integer constants folds at import, with ONNX's two sign rules:
/// fmod 0 takes the divisor's sign (Python's %: 7 mod −4 = −1), fmod 1
/// the dividend's (C's fmod: 3). The result sizes a Reshape of x [B, 6]
/// to [-1, 2, r] and back, so a wrong rule fails the load or the values.
final class ONNXModTests: XCTestCase {
    typealias P = ONNXProtoModel

    func model(fmod: Int64) -> P {
        func n(_ op: String, _ i: [String], _ o: String, _ a: [String: P.Attribute] = [:]) -> P.Node {
            P.Node(opType: op, domain: "", name: o, inputs: i, outputs: [o], attributes: a)
        }
        func ints(_ name: String, _ v: [Int64]) -> P.Tensor {
            P.Tensor(name: name, dims: [Int64(v.count)], dataType: 7, raw: nil, floats: [], int32s: [], int64s: v, doubles: [],
                     isExternal: false, external: [:])
        }
        let nodes = [
            n("Mod", ["seven", "minus4"], "r", ["fmod": .init(type: 2, f: nil, i: fmod, s: nil, t: nil, floats: [], ints: [])]),
            n("Concat", ["lead", "r"], "target", ["axis": .init(type: 2, f: nil, i: 0, s: nil, t: nil, floats: [], ints: [])]),
            n("Reshape", ["x", "target"], "y"),
            n("Reshape", ["y", "flat"], "z"),
            n("Add", ["z", "x"], "v"),
        ]
        return P(irVersion: 8, producer: "test", opsets: ["": 17],
                 graph: .init(nodes: nodes, initializers: [ints("seven", [7]), ints("minus4", [-4]), ints("lead", [-1, 2]),
                                                            ints("flat", [-1, 6])],
                              inputs: [.init(name: "x", elementType: 1, dims: [nil, 6]), .init(name: "t", elementType: 1, dims: [nil, 1])],
                              outputs: [.init(name: "v", elementType: 1, dims: [nil, 6])]),
                 metadata: [])
    }

    func testModFoldsWithBothSignRules() throws {
        // fmod 1: 7 fmod −4 = 3, so [-1, 2, 3]: v = 2x.
        let m = try model(fmod: 1).serialized().withUnsafeBytes { try Model.loadONNX(bytes: $0) }
        let x = Tensor(shape: [2, 6], scalars: (0..<12).map { Float($0) - 5 })
        XCTAssertEqual(m.velocity(t: [0.1, 0.2], x: x).scalars, x.scalars.map { 2 * $0 })
        // fmod 0: 7 mod −4 = −1, so [-1, 2, -1]: two −1s, refused by name.
        XCTAssertThrowsError(try model(fmod: 0).serialized().withUnsafeBytes { try Model.loadONNX(bytes: $0) }) { e in
            XCTAssertTrue("\(e)".contains("more than one -1"), "\(e)")
        }
    }
}
