import XCTest
@testable import FlowRuntime

/// AveragePool, MaxPool, GlobalAveragePool and GlobalMaxPool (`PoolOp`)
/// against independent references, with ImageOpDerivativeTests' helpers
/// and tolerances (see there):
///
/// 1. Forward values against naive Double loops written here from the ONNX
///    definition (every kernel offset visited, padding recognised by its
///    position), and output shapes against extents worked out by hand.
///    Averages within 2e-5 · max(1, |reference|) (float32 sums of ≤ 9
///    terms); maxima exactly (a max picks an input element).
/// 2. JVP (k = 2) and VJP against the fourth-order finite-difference stencil
///    (`checkDerivatives`). MaxPool's inputs are spread: u = a ⊙ x + c with
///    a ≈ 0.05 and c a whole number per position, distinct within every
///    window: Σ_axes (position mod m)·m^… with m = 3 (any window of ≤ 3
///    taps per axis, dilation 1 or 2, sees distinct residues) or m = 2
///    (undilated 2-tap windows), or a permutation of the plane for global
///    pools; centred. Elements of a window differ by
///    ≥ 1 − 2·0.07·4 ≈ 0.4 ≫ the stencil's 2h·0.07·|u̇|, so the argmax never
///    flips inside a difference, while |c| stays small enough (≤ 6) that
///    float32 rounding of u (|c|·6e-8) is ≲ 1e-3 of the perturbation h·a.
/// 3. ONNX import: auto_pad SAME_UPPER / SAME_LOWER, the global pools, an
///    export → re-import round trip, and the refused attributes by message.
final class PoolOpTests: XCTestCase {
    /// ImageOpDerivativeTests' helpers (graph, checkDerivatives,
    /// nodeOutputs, assertClose); their assertions record on the running test.
    let helpers = ImageOpDerivativeTests(name: "helpers", testClosure: { _ in })

    struct Case {
        var max: Bool
        var x: [Int]
        var kernel: [Int], strides: [Int], padsBegin: [Int], padsEnd: [Int]
        var dilations: [Int]? = nil
        var ceil = false, includePad = false
        /// The output shape, worked out by hand.
        var out: [Int]
        var op: FlowRuntime.Operation {
            max ? .maxPool(kernel: kernel, strides: strides, padsBegin: padsBegin, padsEnd: padsEnd, dilations: dilations,
                           ceilMode: ceil)
                : .averagePool(kernel: kernel, strides: strides, padsBegin: padsBegin, padsEnd: padsEnd, ceilMode: ceil,
                               countIncludePad: includePad)
        }
        var label: String {
            "\(max ? "MaxPool" : "AveragePool") x \(x) k \(kernel) s \(strides) pads \(padsBegin + padsEnd) d \(dilations ?? []) ceil \(ceil) include \(includePad)"
        }
    }

    let cases: [Case] = [
        // kernel 2, stride 2.
        Case(max: false, x: [2, 4, 6], kernel: [2, 2], strides: [2, 2], padsBegin: [0, 0], padsEnd: [0, 0], out: [2, 2, 3]),
        Case(max: true, x: [2, 4, 6], kernel: [2, 2], strides: [2, 2], padsBegin: [0, 0], padsEnd: [0, 0], out: [2, 2, 3]),
        // kernel 3, stride 2, pads 1: (5 + 2 − 3)/2 + 1 = 3, ⌊(6 + 2 − 3)/2⌋ + 1 = 3.
        Case(max: false, x: [2, 5, 6], kernel: [3, 3], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1], includePad: true,
             out: [2, 3, 3]),
        Case(max: false, x: [2, 5, 6], kernel: [3, 3], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1], includePad: false,
             out: [2, 3, 3]),
        Case(max: true, x: [2, 5, 6], kernel: [3, 3], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1], out: [2, 3, 3]),
        // ceil_mode: ⌈(6 + 2 − 3)/2⌉ + 1 = 4, ⌈(7 + 2 − 3)/2⌉ + 1 = 4; the last
        // H window (rows 5, 6, 7) has one row past the end padding, which
        // count_include_pad does not count (divisor 2·3, not 3·3).
        Case(max: false, x: [2, 6, 7], kernel: [3, 3], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1], ceil: true,
             includePad: true, out: [2, 4, 4]),
        Case(max: false, x: [2, 6, 7], kernel: [3, 3], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1], ceil: true,
             includePad: false, out: [2, 4, 4]),
        Case(max: true, x: [2, 6, 7], kernel: [3, 3], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1], ceil: true,
             out: [2, 4, 4]),
        // ceil_mode's rule: ⌈(2 − 1)/2⌉ + 1 = 2 would start the last window at
        // 2 ≥ n + pb = 2, so 1; on W ⌈3/2⌉ + 1 = 3 → 2 (ONNX's
        // maxpool_2d_ceil_output_size_reduce_by_one).
        Case(max: true, x: [2, 2, 4], kernel: [1, 1], strides: [2, 2], padsBegin: [0, 0], padsEnd: [0, 0], ceil: true,
             out: [2, 1, 2]),
        // Dilations 2, kernel 2×3, strides 1×2, asymmetric pads: H (5 + 1 − 3) + 1 = 4, W ⌊(6 + 1 − 5)/2⌋ + 1 = 2.
        Case(max: true, x: [2, 5, 6], kernel: [2, 3], strides: [1, 2], padsBegin: [1, 0], padsEnd: [0, 1], dilations: [2, 2],
             out: [2, 4, 2]),
        // Rank 2 [C, L] (1-D): ⌊(9 + 1 + 2 − 3)/2⌋ + 1 = 5.
        Case(max: false, x: [3, 9], kernel: [3], strides: [2], padsBegin: [1], padsEnd: [2], includePad: true, out: [3, 5]),
        Case(max: false, x: [3, 9], kernel: [3], strides: [2], padsBegin: [1], padsEnd: [2], includePad: false, out: [3, 5]),
        Case(max: true, x: [3, 9], kernel: [3], strides: [2], padsBegin: [1], padsEnd: [2], out: [3, 5]),
        // Rank 4 [C, D, H, W] (3-D).
        Case(max: false, x: [2, 3, 4, 4], kernel: [2, 2, 2], strides: [1, 2, 2], padsBegin: [0, 0, 1], padsEnd: [1, 0, 0],
             includePad: true, out: [2, 3, 2, 2]),
        Case(max: true, x: [2, 3, 4, 4], kernel: [2, 2, 2], strides: [1, 2, 2], padsBegin: [0, 0, 1], padsEnd: [1, 0, 0],
             out: [2, 3, 2, 2]),
    ]

    /// The pool of `x` (one sample, `shape` = [C, spatial…]) from the ONNX
    /// definition in Double.
    static func reference(_ x: ArraySlice<Float>, shape: [Int], max: Bool, kernel: [Int], strides: [Int], padsBegin: [Int],
                          padsEnd: [Int], dilations: [Int], ceil: Bool, includePad: Bool) -> (shape: [Int], values: [Double]) {
        let r = kernel.count, spatial = Array(shape.dropFirst())
        let out = (0..<r).map { a -> Int in
            let v = Double(spatial[a] + padsBegin[a] + padsEnd[a] - ((kernel[a] - 1) * dilations[a] + 1)) / Double(strides[a])
            var o = Int(ceil ? v.rounded(.up) : v.rounded(.down)) + 1
            if ceil && (o - 1) * strides[a] >= spatial[a] + padsBegin[a] { o -= 1 }
            return o
        }
        func unflatten(_ i: Int, _ extents: [Int]) -> [Int] {
            var rest = i, idx = [Int](repeating: 0, count: extents.count)
            for a in (0..<extents.count).reversed() { idx[a] = rest % extents[a]; rest /= extents[a] }
            return idx
        }
        let base = x.startIndex, plane = spatial.reduce(1, *)
        var values: [Double] = []
        for ch in 0..<shape[0] {
            for o in 0..<out.reduce(1, *) {
                let oi = unflatten(o, out)
                var sum = 0.0, best = -Double.infinity, inside = 0, padded = 0
                for j in 0..<kernel.reduce(1, *) {
                    let ji = unflatten(j, kernel)
                    let pos = (0..<r).map { oi[$0] * strides[$0] - padsBegin[$0] + ji[$0] * dilations[$0] }
                    if (0..<r).allSatisfy({ pos[$0] >= -padsBegin[$0] && pos[$0] < spatial[$0] + padsEnd[$0] }) { padded += 1 }
                    guard (0..<r).allSatisfy({ pos[$0] >= 0 && pos[$0] < spatial[$0] }) else { continue }
                    var flat = 0
                    for a in 0..<r { flat = flat * spatial[a] + pos[a] }
                    let v = Double(x[base + ch * plane + flat])
                    inside += 1; sum += v; best = Swift.max(best, v)
                }
                values.append(max ? best : sum / Double(includePad ? padded : inside))
            }
        }
        return ([shape[0]] + out, values)
    }

    /// x → u = a ⊙ x + c (a ≈ 0.05, c spread as described above; both
    /// trainable) → op → flatten → Linear(d): ImageOpDerivativeTests.graph
    /// with window elements kept apart, for MaxPool.
    func spreadGraph(_ shape: [Int], seed: UInt64, modulus m: Int = 3, global: Bool = false,
                     _ op: FlowRuntime.Operation) throws -> Graph {
        var b = GraphBuilder(sampleShape: shape)
        let n = shape.elementCount, spatial = Array(shape.dropFirst()), plane = n / shape[0]
        var order = Array(0..<plane)
        var rng = RandomStream(seed: seed, purpose: .custom, index: 1)
        for i in stride(from: plane - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.nextUniform() * Double(i + 1)) % (i + 1)) }
        let levels = global ? plane : spatial.map { _ in m }.reduce(1, *)
        let spread = (0..<n).map { i -> Float in
            var rest = i % plane, code = 0, weight = 1
            for a in (0..<spatial.count).reversed() { code += rest % spatial[a] % m * weight; weight *= m; rest /= spatial[a] }
            return Float((global ? order[i % plane] : code) * 2 - (levels - 1)) / 2
        }
        let a = b.parameter("pre.scale", helpers.random(shape, seed: seed + 100, scale: 0.01, offset: 0.05))
        let c = b.parameter("pre.shift", Tensor(shape: shape, scalars: spread))
        let u = try b.add(try b.mul(b.x, a), c)
        let z = try b.apply(op, [u], name: "op")
        let m = b.shape(of: z).elementCount
        let flat = try b.apply(.reshape(shape: [m]), [z], name: "flatten")
        let out = try b.linear(flat, weight: helpers.random([n, m], seed: seed + 102, scale: 1 / Double(m).squareRoot()),
                               bias: helpers.random([n], seed: seed + 103, scale: 0.1), name: "post")
        return try b.finish(output: out)
    }

    func derivativeGraph(_ c: Case, seed: UInt64) throws -> Graph {
        let modulus = c.dilations == nil && c.kernel.allSatisfy({ $0 <= 2 }) ? 2 : 3
        return c.max ? try spreadGraph(c.x, seed: seed, modulus: modulus, c.op) : try helpers.graph(c.x, seed: seed) { b, u in try b.apply(c.op, [u], name: "op") }
    }

    // MARK: Forward

    func testForwardMatchesReference() throws {
        for (i, c) in cases.enumerated() {
            let batch = 2, d = c.x.elementCount
            let x = helpers.random([batch, d], seed: UInt64(40 + i)).scalars
            let g = try helpers.graph(c.x, seed: UInt64(i), pre: false) { b, u in try b.apply(c.op, [u], name: "op") }
            let out = try helpers.nodeOutputs(g, x: x, batch: batch, names: ["op"])["op"]!
            XCTAssertEqual(out.shape, c.out, c.label)
            var expected: [Double] = []
            for s in 0..<batch {
                let r = Self.reference(x[(s * d)..<((s + 1) * d)], shape: c.x, max: c.max, kernel: c.kernel, strides: c.strides,
                                       padsBegin: c.padsBegin, padsEnd: c.padsEnd,
                                       dilations: c.dilations ?? c.kernel.map { _ in 1 }, ceil: c.ceil, includePad: c.includePad)
                XCTAssertEqual(r.shape, c.out, "reference shape, \(c.label)")
                expected += r.values
            }
            helpers.assertClose(out.values, expected, tolerance: c.max ? 0 : nil, "\(c.label) forward")
        }
    }

    /// Global pools: one value per channel, the mean or the max of its plane.
    func testGlobalPoolsForward() throws {
        for max in [false, true] {
            for shape in [[3, 4, 5], [2, 7], [2, 2, 3, 3]] {
                let batch = 2, d = shape.elementCount, plane = d / shape[0]
                let x = helpers.random([batch, d], seed: 61).scalars
                let g = try helpers.graph(shape, seed: 5, pre: false) { b, u in
                    try b.apply(.globalPool(max: max, spatial: Array(shape.dropFirst())), [u], name: "op")
                }
                let out = try helpers.nodeOutputs(g, x: x, batch: batch, names: ["op"])["op"]!
                XCTAssertEqual(out.shape, [shape[0]] + shape.dropFirst().map { _ in 1 })
                var expected: [Double] = []
                for row in 0..<(batch * shape[0]) {
                    let v = x[(row * plane)..<((row + 1) * plane)].map(Double.init)
                    expected.append(max ? v.max()! : v.reduce(0, +) / Double(plane))
                }
                helpers.assertClose(out.values, expected, tolerance: max ? 0 : nil, "Global\(max ? "Max" : "Average")Pool \(shape)")
            }
        }
    }

    /// MaxPool ties go to the first element in window order, and padding
    /// never wins even when every input is negative.
    func testMaxPoolTiesAndPadding() throws {
        let op = FlowRuntime.Operation.maxPool(kernel: [2, 2], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1])
        let g = try helpers.graph([1, 2, 2], seed: 3, pre: false) { b, u in try b.apply(op, [u], name: "op") }
        let x: [Float] = [-3, -2, -1, -4]
        let out = try helpers.nodeOutputs(g, x: x, batch: 1, names: ["op"])["op"]!
        XCTAssertEqual(out.values, [-3, -2, -1, -4], "each corner window holds one element and padding")
        // A window of four equal values: the gradient goes to the first only.
        let tie = FlowRuntime.Operation.maxPool(kernel: [2, 2], strides: [2, 2], padsBegin: [0, 0], padsEnd: [0, 0])
        var b = GraphBuilder(sampleShape: [1, 2, 2])
        let shift = b.parameter("pre.shift", Tensor(shape: [1, 2, 2], scalars: [0, 0, 0, 0]))
        let y = try b.apply(tie, [try b.add(b.x, shift)], name: "op")
        let flat = try b.apply(.reshape(shape: [1]), [y])
        let v = try b.linear(flat, weight: Tensor(shape: [4, 1], scalars: [1, 1, 1, 1]), bias: Tensor(shape: [4], scalars: [0, 0, 0, 0]),
                             name: "post")
        let tieGraph = try b.finish(output: v)
        let diff = try GraphDifferentiator(graph: tieGraph)
        let ws = GraphWorkspace()
        XCTAssertEqual(helpers.run(diff.executor, [0.5], [2, 2, 2, 2], nil, ws: ws, record: true), [2, 2, 2, 2])
        [Float(1), 0, 0, 0].withUnsafeBufferPointer { diff.backward(outputGradient: $0.baseAddress!, workspace: ws) }
        let p = tieGraph.parameters.firstIndex { $0.name == "pre.shift" }!
        XCTAssertEqual(diff.withGradient(p, workspace: ws) { Array($0) }, [1, 0, 0, 0],
                       "the tie's gradient goes to the first element in window order")
    }

    // MARK: Derivatives

    func testDerivatives() throws {
        for (i, c) in cases.enumerated() where c.x.elementCount <= 100 {
            try helpers.checkDerivatives(try derivativeGraph(c, seed: UInt64(20 + i)), c.label)
        }
    }

    /// MaxPool's JVP reads each sample's own argmax, for every tangent:
    /// two samples whose inputs are different permutations (so their argmax
    /// positions differ; the spread inputs of `testDerivatives` share theirs),
    /// k = 3 tangents, ẏ against ẋ at the reference argmax, exactly.
    func testMaxPoolJVPUsesEachSamplesArgmax() throws {
        let shape = [2, 5, 6], d = 60, batch = 2, k = 3
        let c = Case(max: true, x: shape, kernel: [3, 3], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1], out: [2, 3, 3])
        var b = GraphBuilder(sampleShape: shape)
        let y = try b.apply(c.op, [b.x], name: "op")
        let flat = try b.apply(.reshape(shape: [18]), [y])
        // v[0..<18] = y exactly (weights 1 and 0), the rest 0.
        var w = [Float](repeating: 0, count: d * 18)
        for i in 0..<18 { w[i * 18 + i] = 1 }
        let v = try b.linear(flat, weight: Tensor(shape: [d, 18], scalars: w), bias: Tensor(shape: [d], scalars: [Float](repeating: 0, count: d)),
                             name: "post")
        let model = try Model(graph: try b.finish(output: v))
        var x: [Float] = []
        for s in 0..<batch {
            var order = Array(0..<d)
            var rng = RandomStream(seed: 90 + UInt64(s), purpose: .custom, index: 0)
            for i in stride(from: d - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.nextUniform() * Double(i + 1)) % (i + 1)) }
            x += order.map { Float($0) * 0.5 }
        }
        let u = helpers.random([batch, k, d], seed: 91).scalars
        var values = [Float](repeating: 0, count: batch * d), products = [Float](repeating: 0, count: batch * k * d)
        [0.3, 0.6].withUnsafeBufferPointer { tb in x.withUnsafeBufferPointer { xb in u.withUnsafeBufferPointer { ub in
            values.withUnsafeMutableBufferPointer { vb in products.withUnsafeMutableBufferPointer { pb in
                model.velocityJVP(times: tb, points: xb, tangents: ub, k: k, into: vb, products: pb, workspace: model.makeWorkspace())
            } }
        } } }
        var argmax: [[Int]] = [[], []]
        for s in 0..<batch {
            for ch in 0..<2 { for oh in 0..<3 { for ow in 0..<3 {
                var best = -1, bestValue = -Float.infinity
                for i in (2 * oh - 1)...(2 * oh + 1) where i >= 0 && i < 5 {
                    for j in (2 * ow - 1)...(2 * ow + 1) where j >= 0 && j < 6 {
                        let at = ch * 30 + i * 6 + j
                        if x[s * d + at] > bestValue { bestValue = x[s * d + at]; best = at }
                    }
                }
                let o = (ch * 3 + oh) * 3 + ow
                XCTAssertEqual(values[s * d + o], bestValue, "sample \(s) output \(o)")
                argmax[s].append(best)
                for j in 0..<k {
                    XCTAssertEqual(products[(s * k + j) * d + o], u[(s * k + j) * d + best], "sample \(s), tangent \(j), output \(o)")
                }
            } } }
        }
        XCTAssertNotEqual(argmax[0], argmax[1], "the samples have their maxima at different positions")
    }

    func testGlobalPoolDerivatives() throws {
        try helpers.checkDerivatives(try helpers.graph([3, 4, 5], seed: 7) { b, u in
            try b.apply(.globalPool(max: false, spatial: [4, 5]), [u], name: "op")
        }, "GlobalAveragePool")
        try helpers.checkDerivatives(try spreadGraph([3, 3, 4], seed: 8, global: true, .globalPool(max: true, spatial: [3, 4])), "GlobalMaxPool")
    }

    // MARK: ONNX

    typealias P = ONNXProtoModel

    static func attribute(_ v: Int64) -> P.Attribute { .init(type: 2, f: nil, i: v, s: nil, t: nil, floats: [], ints: []) }
    static func attribute(_ v: [Int64]) -> P.Attribute { .init(type: 7, f: nil, i: nil, s: nil, t: nil, floats: [], ints: v) }
    static func attribute(_ s: String) -> P.Attribute { .init(type: 3, f: nil, i: nil, s: s, t: nil, floats: [], ints: []) }

    /// x [batch, 2, 5, 6] → `op` (with `attributes`, outputs `outputs`) → v = x + pooled (broadcast), t unused.
    static func model(_ op: String, _ attributes: [String: P.Attribute], outputs: [String] = ["p"], extra: [P.Node] = [],
                      opset: Int64 = 17) -> P {
        let pool = P.Node(opType: op, domain: "", name: "pool", inputs: ["x"], outputs: outputs, attributes: attributes)
        let add = P.Node(opType: "Add", domain: "", name: "add", inputs: ["x", "p"], outputs: ["v"], attributes: [:])
        let dims: [Int64?] = [nil, 2, 5, 6]
        return P(irVersion: 8, producer: "test", opsets: ["": opset],
                 graph: .init(nodes: [pool] + extra + [add], initializers: [],
                              inputs: [.init(name: "x", elementType: 1, dims: dims), .init(name: "t", elementType: 1, dims: [nil, 1])],
                              outputs: [.init(name: "v", elementType: 1, dims: dims)]),
                 metadata: [])
    }

    func load(_ m: P) throws -> Model { try m.serialized().withUnsafeBytes { try Model.loadONNX(bytes: $0) } }

    /// auto_pad SAME_UPPER / SAME_LOWER with kernel 2, stride 1: one pad at
    /// the end / the start of each axis; the values against the reference
    /// with those pads, and again after export (explicit pads) and re-import.
    func testAutoPadImportAndRoundTrip() throws {
        let x = helpers.random([2, 60], seed: 71).scalars
        for (op, include) in [("MaxPool", Int64(0)), ("AveragePool", 0), ("AveragePool", 1)] {
            for upper in [true, false] {
                var a: [String: P.Attribute] = ["kernel_shape": Self.attribute([2, 2]), "auto_pad": Self.attribute(upper ? "SAME_UPPER" : "SAME_LOWER")]
                if op == "AveragePool" { a["count_include_pad"] = Self.attribute(include) }
                let label = "\(op) \(upper ? "SAME_UPPER" : "SAME_LOWER") count_include_pad \(include)"
                let model = try load(Self.model(op, a))
                let pooled = try helpers.nodeOutputs(model.graph, x: x, batch: 2, names: ["pool"])["pool"]!
                XCTAssertEqual(pooled.shape, [2, 5, 6], label)
                var expected: [Double] = []
                for s in 0..<2 {
                    expected += Self.reference(x[(s * 60)..<((s + 1) * 60)], shape: [2, 5, 6], max: op == "MaxPool", kernel: [2, 2],
                                               strides: [1, 1], padsBegin: upper ? [0, 0] : [1, 1], padsEnd: upper ? [1, 1] : [0, 0],
                                               dilations: [1, 1], ceil: false, includePad: include == 1).values
                }
                helpers.assertClose(pooled.values, expected, tolerance: op == "MaxPool" ? 0 : nil, label)
                let v = model.velocity(t: [0.1, 0.2], x: Tensor(shape: [2, 60], scalars: x))
                let bytes = try model.onnxData()
                let exported = try bytes.withUnsafeBytes { try P.parse($0) }
                let node = try XCTUnwrap(exported.graph.nodes.first { $0.opType == op }, label)
                XCTAssertNil(node.attributes["auto_pad"], label)
                XCTAssertEqual(node.attributes["pads"]?.ints, upper ? [0, 0, 1, 1] : [1, 1, 0, 0], label)
                let again = try bytes.withUnsafeBytes { try Model.loadONNX(bytes: $0) }
                XCTAssertEqual(again.velocity(t: [0.1, 0.2], x: Tensor(shape: [2, 60], scalars: x)).scalars, v.scalars,
                               "\(label): export → import")
            }
        }
    }

    func testGlobalPoolsImportAndRoundTrip() throws {
        let x = helpers.random([2, 60], seed: 72).scalars
        for op in ["GlobalAveragePool", "GlobalMaxPool"] {
            let model = try load(Self.model(op, [:]))
            let pooled = try helpers.nodeOutputs(model.graph, x: x, batch: 2, names: ["pool"])["pool"]!
            XCTAssertEqual(pooled.shape, [2, 1, 1], op)
            let expected = (0..<4).map { row -> Double in
                let v = x[(row * 30)..<((row + 1) * 30)].map(Double.init)
                return op == "GlobalMaxPool" ? v.max()! : v.reduce(0, +) / 30
            }
            helpers.assertClose(pooled.values, expected, tolerance: op == "GlobalMaxPool" ? 0 : nil, op)
            let bytes = try model.onnxData()
            XCTAssertTrue(try bytes.withUnsafeBytes { try P.parse($0) }.graph.nodes.contains { $0.opType == op }, op)
            let again = try bytes.withUnsafeBytes { try Model.loadONNX(bytes: $0) }
            XCTAssertEqual(again.velocity(t: [0.3, 0.4], x: Tensor(shape: [2, 60], scalars: x)).scalars,
                           model.velocity(t: [0.3, 0.4], x: Tensor(shape: [2, 60], scalars: x)).scalars, "\(op): export → import")
        }
    }

    func assertRefused(_ m: P, _ fragments: [String], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try load(m), what, file: file, line: line) { e in
            guard case .unsupported(let message)? = e as? FlowError else { return XCTFail("\(what): \(e)", file: file, line: line) }
            for f in fragments { XCTAssertTrue(message.contains(f), "\(what): '\(message)' lacks '\(f)'", file: file, line: line) }
        }
    }

    func testRefusedAttributesAreNamed() throws {
        let same: [String: P.Attribute] = ["kernel_shape": Self.attribute([3, 3]), "pads": Self.attribute([1, 1, 1, 1])]
        XCTAssertNoThrow(try load(Self.model("MaxPool", same)))
        XCTAssertNoThrow(try load(Self.model("MaxPool", same, outputs: ["p", "unread"])), "an unread Indices output is fine")
        var columnMajor = same
        columnMajor["storage_order"] = Self.attribute(1)
        assertRefused(Self.model("MaxPool", columnMajor), ["node 'pool'", "MaxPool", "storage_order"], "storage_order 1")
        let reader = P.Node(opType: "Identity", domain: "", name: "use", inputs: ["idx"], outputs: ["idx2"], attributes: [:])
        assertRefused(Self.model("MaxPool", same, outputs: ["p", "idx"], extra: [reader]), ["node 'pool'", "'idx'", "Indices"],
                      "Indices read")
        var dilated = same
        dilated["dilations"] = Self.attribute([2, 2])
        dilated["pads"] = Self.attribute([2, 2, 2, 2])
        XCTAssertNoThrow(try load(Self.model("MaxPool", dilated)), "MaxPool dilations")
        assertRefused(Self.model("AveragePool", dilated, opset: 19), ["node 'pool'", "AveragePool", "dilations"], "AveragePool dilations")
        // Pads as wide as the window leave a window of padding only.
        let allPad: [String: P.Attribute] = ["kernel_shape": Self.attribute([2, 2]), "pads": Self.attribute([2, 0, 0, 0])]
        assertRefused(Self.model("MaxPool", allPad), ["pool", "covers only padding"], "all-padding window")
    }
}
