import Foundation
import XCTest
@testable import FlowRuntime

/// Malformed ONNX input: each case is a `FlowError` with a message naming
/// the problem, never a crash or an allocation the bytes do not justify.
final class ONNXBadFileTests: XCTestCase {
    typealias P = ONNXProtoModel

    static func tensor(_ name: String, _ dims: [Int64], _ values: [Float]) -> P.Tensor {
        P.Tensor(name: name, dims: dims, dataType: 1, raw: nil, floats: values, int32s: [], int64s: [], doubles: [],
                 isExternal: false, external: [:])
    }

    static func node(_ op: String, _ inputs: [String], _ output: String, _ attributes: [String: P.Attribute] = [:]) -> P.Node {
        P.Node(opType: op, domain: "", name: "\(op)_\(output)", inputs: inputs, outputs: [output], attributes: attributes)
    }

    /// concat(x, t) → Gemm(8) → act → Gemm(2): a valid tiny model to break.
    static func model(activation: String = "Relu", xType: Int32 = 1, w: P.Tensor? = nil) -> P {
        let transB = P.Attribute(type: 2, f: nil, i: 1, s: nil, t: nil, floats: [], ints: [])
        let graph = P.Graph(
            nodes: [node("Concat", ["x", "t"], "xt", ["axis": .init(type: 2, f: nil, i: -1, s: nil, t: nil, floats: [], ints: [])]),
                    node("Gemm", ["xt", "w"], "h", ["transB": transB]),
                    node(activation, ["h"], "a"),
                    node("Gemm", ["a", "w2"], "v", ["transB": transB])],
            initializers: [w ?? tensor("w", [8, 3], [Float](repeating: 0.5, count: 24)),
                           tensor("w2", [2, 8], [Float](repeating: 0.25, count: 16))],
            inputs: [.init(name: "x", elementType: xType, dims: [nil, 2]), .init(name: "t", elementType: 1, dims: [nil, 1])],
            outputs: [.init(name: "v", elementType: 1, dims: [nil, 2])])
        return P(irVersion: 8, producer: "test", opsets: ["": 17], graph: graph, metadata: [])
    }

    func load(_ bytes: [UInt8], directory: String? = nil) throws -> Model {
        try bytes.withUnsafeBytes { try Model.loadONNX(bytes: $0, directory: directory) }
    }

    func assertError(_ bytes: [UInt8], directory: String? = nil, _ check: (FlowError) -> Bool, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try load(bytes, directory: directory)
            XCTFail("\(what): loaded", file: file, line: line)
        } catch let e as FlowError {
            XCTAssertFalse(e.message.isEmpty, file: file, line: line)
            XCTAssertTrue(check(e), "\(what): \(e)", file: file, line: line)
        } catch {
            XCTFail("\(what): \(error)", file: file, line: line)
        }
    }

    func testTheValidModelComputesByHand() throws {
        let m = try load(Self.model().serialized())
        let v = m.velocity(t: [0.5], x: Tensor(shape: [1, 2], scalars: [1, -3]))
        // h = relu(0.5 · (1 − 3 + 0.5)) = 0 per unit → v = 0; use x = (1, 3).
        XCTAssertEqual(v.scalars, [0, 0])
        let v2 = m.velocity(t: [0.5], x: Tensor(shape: [1, 2], scalars: [1, 3]))
        XCTAssertEqual(v2.scalars[0], 8 * 0.25 * 0.5 * 4.5, accuracy: 1e-5)
    }

    func testTruncatedBytes() {
        let bytes = Self.model().serialized()
        for cut in [1, 5, bytes.count / 3, bytes.count / 2, bytes.count - 1] {
            assertError(Array(bytes.prefix(cut)), { _ in true }, "truncated at \(cut)")
        }
    }

    func testRandomBytes() {
        var rng = RandomStream(seed: 1, purpose: .initialization, index: 0)
        for n in [1, 16, 1000, 65536] {
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: Int(rng.nextUniform() * 256)) }
            assertError(bytes, { _ in true }, "random \(n)")
        }
        assertError([], { if case .invalidModel = $0 { return true }; return false }, "empty")
    }

    func testWrongInputDType() {
        assertError(Self.model(xType: 7).serialized(), { e in
            if case .unsupported(let m) = e { return m.contains("INT64") }; return false
        }, "int64 x")
    }

    func testWrongInitializerDType() {
        var w = Self.tensor("w", [8, 3], [])
        w.dataType = 8  // STRING
        assertError(Self.model(w: w).serialized(), { if case .unsupported = $0 { return true }; return false }, "string weight")
    }

    func testInconsistentShapes() {
        assertError(Self.model(w: Self.tensor("w", [8, 5], [Float](repeating: 1, count: 40))).serialized(),
                    { if case .shapeMismatch = $0 { return true }; return false }, "weight [8, 5]")
        assertError(Self.model(w: Self.tensor("w", [8, 3], [Float](repeating: 1, count: 23))).serialized(),
                    { if case .invalidModel = $0 { return true }; return false }, "23 values for 24")
    }

    func testDimensionClaimingATrillionElements() {
        var w = Self.tensor("w", [1_000_000, 1_000_000], [])
        w.raw = [0, 0, 0, 0]
        assertError(Self.model(w: w).serialized(), { e in
            if case .invalidModel(let m) = e { return m.contains("1000000") }; return false
        }, "10^12 elements")
        var overflow = Self.tensor("w", [1 << 40, 1 << 40], [])
        overflow.raw = []
        assertError(Self.model(w: overflow).serialized(), { if case .invalidModel = $0 { return true }; return false }, "overflow")
    }

    func testUnsupportedOpNamesOpNodeAndOpset() {
        assertError(Self.model(activation: "Softsign").serialized(), { e in
            guard case .unsupported(let m) = e else { return false }
            return m.contains("Softsign") && m.contains("Softsign_a") && m.contains("opset 17")
        }, "Softsign")
    }

    /// Every unsupported op is named at once, before an earlier node that
    /// would fail for another reason (here a Reshape of the batch axis).
    func testAllUnsupportedOpsAreListedFirst() {
        var m = Self.model(activation: "Softsign")
        m.graph.nodes.insert(Self.node("Reshape", ["x", "w"], "bad"), at: 0)
        m.graph.nodes.insert(Self.node("GridSample", ["x", "bad"], "g"), at: 1)
        assertError(m.serialized(), { e in
            guard case .unsupported(let msg) = e else { return false }
            return msg.contains("GridSample (node 'GridSample_g', opset 17)") && msg.contains("Softsign (node 'Softsign_a'")
        }, "GridSample and Softsign")
    }

    func externalModel(location: String) -> [UInt8] {
        var w = Self.tensor("w", [8, 3], [])
        w.isExternal = true
        w.external = ["location": location, "offset": "4", "length": "96"]
        return Self.model(w: w).serialized()
    }

    func testExternalData() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowrt-ext-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // 4 bytes of padding, then 24 floats of 0.5: the offset is honoured.
        var data = [UInt8](repeating: 0xFF, count: 4)
        for _ in 0..<24 { withUnsafeBytes(of: Float(0.5).bitPattern.littleEndian) { data += $0 } }
        try Data(data).write(to: dir.appendingPathComponent("w.bin"))
        let loaded = try load(externalModel(location: "w.bin"), directory: dir.path)
        let direct = try load(Self.model().serialized())
        let x = Tensor(shape: [1, 2], scalars: [1, 3])
        XCTAssertEqual(loaded.velocity(t: [0.5], x: x), direct.velocity(t: [0.5], x: x))
        // Missing file, short file, escaping locations, no folder.
        assertError(externalModel(location: "nope.bin"), directory: dir.path,
                    { if case .io(let m) = $0 { return m.contains("nope.bin") }; return false }, "missing")
        try Data(data.prefix(50)).write(to: dir.appendingPathComponent("short.bin"))
        assertError(externalModel(location: "short.bin"), directory: dir.path,
                    { if case .io = $0 { return true }; return false }, "short")
        for escape in ["../w.bin", "/etc/passwd", "a/../../w.bin"] {
            assertError(externalModel(location: escape), directory: dir.path, { e in
                if case .invalidModel(let m) = e { return m.contains("folder") }; return false
            }, escape)
        }
        assertError(externalModel(location: "w.bin"), { if case .invalidArgument = $0 { return true }; return false }, "no folder")
    }

    func testShapeChainsNeedingTheBatchValueAreRejected() {
        // ConstantOfShape(Shape(x)) is a float constant equal for every
        // sample (extent 1 over the batch); adding a [2, 8] constant to it
        // would broadcast the batch against 2, which depends on the batch size.
        var m = Self.model()
        m.graph.nodes.insert(Self.node("Shape", ["x"], "s"), at: 0)
        m.graph.nodes.insert(Self.node("ConstantOfShape", ["s"], "z"), at: 1)
        m.graph.nodes.insert(Self.node("Add", ["z", "w2"], "zz"), at: 2)
        m.graph.outputs = [.init(name: "v", elementType: 1, dims: [nil, 2])]
        assertError(m.serialized(), { e in
            if case .unsupported(let s) = e { return s.contains("batch") }
            if case .shapeMismatch(let s) = e { return s.contains("[1, 2] and [2, 8]") }
            return false
        }, "ConstantOfShape of batch")
    }

    func testFoldedConstantsAreBounded() {
        var m = Self.model()
        let huge = P.Tensor(name: "shape", dims: [2], dataType: 7, raw: nil, floats: [], int32s: [], int64s: [100_000, 100_000],
                            doubles: [], isExternal: false, external: [:])
        m.graph.initializers.append(huge)
        m.graph.nodes.insert(Self.node("ConstantOfShape", ["shape"], "z"), at: 0)
        assertError(m.serialized(), { if case .invalidModel = $0 { return true }; return false }, "ConstantOfShape 10^10")
    }

    /// Deeply nested messages (protobuf-c recurses without a limit) are
    /// rejected before unpacking instead of overflowing the stack.
    func testDeepNestingIsRejected() {
        func varint(_ n: Int) -> [UInt8] {
            var n = UInt64(n), out: [UInt8] = []
            repeat { out.append(UInt8(n & 0x7F) | (n > 0x7F ? 0x80 : 0)); n >>= 7 } while n > 0
            return out
        }
        func field(_ number: Int, _ payload: [UInt8]) -> [UInt8] { varint(number << 3 | 2) + varint(payload.count) + payload }
        // TypeProto.sequence_type → Sequence.elem_type → TypeProto … 2,000 deep (the limit is 48;
        // 300,000 levels crashed protobuf-c before the check).
        var type: [UInt8] = []
        for _ in 0..<2_000 { type = field(4, field(1, type)) }
        let model = varint(1 << 3) + [8] + field(7, field(11, field(1, Array("x".utf8)) + field(2, type)))
        assertError(model, { e in if case .invalidModel(let m) = e { return m.contains("nest") }; return false }, "deep types")
        // NodeProto.attribute → AttributeProto.g → GraphProto.node → … 1,000 deep.
        var graph: [UInt8] = []
        for _ in 0..<1_000 { graph = field(1, field(5, field(6, graph))) }
        assertError(varint(1 << 3) + [8] + field(7, graph), { e in
            if case .invalidModel(let m) = e { return m.contains("nest") }; return false
        }, "deep graphs")
    }

    /// Folding two small constants into a huge broadcast is refused: a few
    /// bytes of file may not ask for 10⁸ floats.
    func testBroadcastOfConstantsIsBounded() {
        var m = Self.model()
        m.graph.initializers += [Self.tensor("col", [10_000, 1], [Float](repeating: 1, count: 10_000)),
                                 Self.tensor("row", [1, 10_000], [Float](repeating: 1, count: 10_000))]
        m.graph.nodes.insert(Self.node("Mul", ["col", "row"], "outer"), at: 0)
        assertError(m.serialized(), { e in
            if case .invalidModel(let s) = e { return s.contains("too many elements") }; return false
        }, "outer product of constants")
    }

    func testUndefinedInputAndMissingOpset() {
        var m = Self.model()
        m.graph.nodes[1].inputs = ["nowhere", "w"]
        assertError(m.serialized(), { e in
            if case .invalidModel(let s) = e { return s.contains("nowhere") }; return false
        }, "undefined")
        var n = Self.model()
        n.opsets = ["com.example": 1]
        assertError(n.serialized(), { if case .invalidModel = $0 { return true }; return false }, "no opset")
    }
}

/// Every fuzz seed and every input the fuzzer once crashed on
/// (fuzz/corpus/regress-*) loads or fails with a `FlowError`.
final class ONNXFuzzCorpusTests: XCTestCase {
    func testCorpusLoadsOrFailsCleanly() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let folder = root.appendingPathComponent("fuzz/corpus")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        XCTAssertGreaterThanOrEqual(names.count, 40)
        var loaded = 0
        for name in names {
            let bytes = try [UInt8](Data(contentsOf: folder.appendingPathComponent(name)))
            do {
                let m = try bytes.withUnsafeBytes { try Model.loadONNX(bytes: $0) }
                _ = try m.onnxData()
                loaded += 1
            } catch is FlowError {
                XCTAssertTrue(name.hasPrefix("regress-"), "seed \(name) should load")
            }
        }
        XCTAssertEqual(loaded, names.filter { !$0.hasPrefix("regress-") }.count)
    }
}
