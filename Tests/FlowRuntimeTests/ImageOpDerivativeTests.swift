import XCTest
@testable import FlowRuntime

/// The image-network ops (Conv, ConvTranspose, GroupNorm(+SiLU), Softmax,
/// batched MatMul and the index-map ops Transpose, Slice, Pad, Resize, Tile,
/// Gather, plus Embedding) against independent references:
///
/// 1. JVP (k = 2 tangents) and VJP against finite differences of the
///    forward pass, by the fourth-order stencil
///    f′ ≈ (8 (f(h) − f(−h)) − (f(2h) − f(−2h))) / 12h at h = 2e-2. Every
///    test graph is x → u = x ⊙ a + c → op → flatten → Linear(d), with
///    trainable a, c of x's shape: the gradient of c is the op's input
///    gradient summed over the batch, so checking every element of c checks
///    the op's input VJP, and the op's own parameters (weights, biases, γ, β,
///    tables) are checked too.
///    Tolerance: within 2e-3 of the largest |derivative| of that check (per
///    parameter tensor for the VJP), as in GraphDerivativeTests. The
///    finite-difference error is float32 rounding of the outputs,
///    ≈ 6e-8·|v|·(terms summed) / h, largest where one element's derivative is
///    small next to the outputs (60-way softmax and GroupNorm, the
///    576-element GroupNorm, the 1000–1500-output convs): 1.4e-3 with a
///    central difference at h = 2.5e-3, falling as 1/h; the stencil's
///    truncation ≈ h⁴/30 · |f⁽⁵⁾/f′| ≈ 1e-7 lets h be large (a central
///    difference's h²/6 · |f‴/f′| was already 4.7e-4 for GroupNorm+SiLU at
///    h = 1e-2). Measured worst: JVP 6.9e-5, VJP 3.2e-4, so ≥ 6× margin,
///    while the weakest breakage tried (GroupNorm's VJP without − mean(h)) is
///    off by 3.4e-2 and most by 0.1–1.
/// 2. Forward values against naive Double loops written here from the ONNX /
///    PyTorch definitions. Tolerance 2e-5 · max(1, max |reference|): float32
///    sums of up to 576 products of O(1) terms round to ≲ 1e-6 relative
///    (measured worst 5e-7, the 576-deep conv); Softmax 1e-6 absolute
///    (measured 7e-8). Pure data movement (Pad, Resize, Transpose, Slice,
///    Tile, Gather, Embedding rows) must match exactly.
/// 3. Exact divergence of a tiny conv net equals the trace of its central
///    finite-difference Jacobian (tolerance at the test).
final class ImageOpDerivativeTests: XCTestCase {
    let tolerance = 2e-3
    let forwardTolerance = 2e-5
    /// Finite-difference step of the fourth-order stencil (JVP and VJP) and
    /// of the central difference in the divergence test.
    let h: Float = 2e-2
    let hDivergence: Float = 5e-3
    /// Set FLOWRT_TEST_VERBOSE=1 to print every check's relative error.
    let verbose = ProcessInfo.processInfo.environment["FLOWRT_TEST_VERBOSE"] != nil

    // MARK: Helpers

    func random(_ shape: [Int], seed: UInt64, scale: Double = 1, offset: Double = 0) -> Tensor {
        var r = RandomStream(seed: seed, purpose: .custom, index: 0)
        return Tensor(shape: shape, scalars: (0..<shape.elementCount).map { _ in Float(offset + r.nextNormal() * scale) })
    }

    /// x (`sampleShape`) → [u = x ⊙ a + c] → body → flatten → Linear(d).
    /// Without `pre`, the body sees x itself (forward checks).
    func graph(_ sampleShape: [Int], seed: UInt64 = 1, pre: Bool = true, context: Bool = false,
               _ body: (inout GraphBuilder, ValueID) throws -> ValueID) throws -> Graph {
        var b = GraphBuilder(sampleShape: sampleShape)
        if context { b.addContext(shape: []) }
        var u = b.x
        if pre {
            let a = b.parameter("pre.scale", random(sampleShape, seed: seed + 100, scale: 0.2, offset: 1))
            let c = b.parameter("pre.shift", random(sampleShape, seed: seed + 101, scale: 0.3))
            u = try b.add(try b.mul(b.x, a), c)
        }
        let z = try body(&b, u)
        let n = b.shape(of: z).elementCount
        let flat = try b.apply(.reshape(shape: [n]), [z], name: "flatten")
        let d = sampleShape.elementCount
        let out = try b.linear(flat, weight: random([d, n], seed: seed + 102, scale: 1 / Double(n).squareRoot()),
                               bias: random([d], seed: seed + 103, scale: 0.1), name: "post")
        return try b.finish(output: out)
    }

    /// Forward pass through an executor (with an optional context).
    func run(_ ex: Executor, _ t: [Double], _ x: [Float], _ context: [Float]?, ws: GraphWorkspace,
             record: Bool) -> [Float] {
        let n = t.count, d = ex.graph.dimension
        return t.withUnsafeBufferPointer { tb in
            x.withUnsafeBufferPointer { xb in
                let go = { (c: UnsafePointer<Float>?) -> [Float] in
                    let out = ex.forward(times: tb, points: xb.baseAddress!, context: c, batch: n, workspace: ws, record: record)
                    return Array(UnsafeBufferPointer(start: out, count: n * d))
                }
                if let context { return context.withUnsafeBufferPointer { go($0.baseAddress!) } }
                return go(nil)
            }
        }
    }

    /// The outputs of the named nodes after a forward pass (per-sample shapes too).
    func nodeOutputs(_ g: Graph, x: [Float], batch: Int, context: [Float]? = nil,
                     names: [String]) throws -> [String: (shape: [Int], values: [Float])] {
        let model = try Model(graph: g)
        let ws = GraphWorkspace()
        let t = (0..<batch).map { 0.2 + 0.1 * Double($0) }
        // A recorded pass keeps every intermediate value in its own buffer
        // (inference passes share buffers between values not alive together).
        let recorded = run(model.executor, t, x, context, ws: ws, record: true)
        // The inference pass (shared buffers, no caches) gives the same output.
        XCTAssertEqual(run(model.executor, t, x, context, ws: GraphWorkspace(), record: false), recorded,
                       "inference and recorded forward passes differ")
        var result: [String: (shape: [Int], values: [Float])] = [:]
        for name in names {
            guard let node = g.nodes.first(where: { $0.name == name }) else { XCTFail("no node \(name)"); continue }
            let shape = g.values[node.output].shape
            result[name] = (shape, Array(UnsafeBufferPointer(start: ws.values[node.output].pointer,
                                                             count: batch * shape.elementCount)))
        }
        return result
    }

    func assertClose(_ actual: [Float], _ expected: [Double], tolerance: Double? = nil, _ message: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, "\(message): element count", file: file, line: line)
        guard actual.count == expected.count else { return }
        let scale = max(1, expected.map { abs($0) }.max() ?? 0)
        var worst = 0.0, at = 0
        for i in 0..<actual.count where abs(Double(actual[i]) - expected[i]) > worst {
            worst = abs(Double(actual[i]) - expected[i]); at = i
        }
        if verbose { print("\(message): max error \(worst), scale \(scale)") }
        XCTAssertLessThanOrEqual(worst, (tolerance ?? forwardTolerance) * scale,
                                 "\(message): max |op − reference| = \(worst) at \(at) (op \(actual[at]), reference \(expected[at]))",
                                 file: file, line: line)
    }

    /// JVP (k = 2) and VJP of every trainable parameter against central
    /// finite differences, optionally with a per-sample context.
    func checkDerivatives(_ g: Graph, context: [Float]? = nil, batch: Int = 3, _ label: String,
                          file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try Model(graph: g)
        let d = model.dimension
        let x = random([batch, d], seed: 11).scalars
        let t = (0..<batch).map { 0.15 + 0.3 * Double($0) }
        let ex = model.executor
        let fws = GraphWorkspace()
        func f(_ x: [Float]) -> [Float] { run(ex, t, x, context, ws: fws, record: false) }

        // JVP with k = 2 tangents per sample.
        let k = 2
        let u = random([batch, k, d], seed: 12).scalars
        let ws = GraphWorkspace()
        let v = run(ex, t, x, context, ws: ws, record: true)
        XCTAssertEqual(v, f(x), "\(label): recorded forward differs", file: file, line: line)
        let jv: [Float] = u.withUnsafeBufferPointer { ub in
            guard let p = ex.jvp(tangents: ub.baseAddress!, k: k, workspace: ws) else {
                return [Float](repeating: 0, count: batch * k * d)
            }
            return Array(UnsafeBufferPointer(start: p, count: batch * k * d))
        }
        var worst = 0.0, scale = 1e-6
        for i in 0..<batch {
            for j in 0..<k {
                func shifted(_ m: Float) -> [Double] {
                    var xs = x
                    for c in 0..<d { xs[i * d + c] += m * h * u[(i * k + j) * d + c] }
                    return f(xs).map(Double.init)
                }
                let fp = shifted(1), fm = shifted(-1), fp2 = shifted(2), fm2 = shifted(-2)
                for c in 0..<d {
                    let n = i * d + c
                    let fd = (8 * (fp[n] - fm[n]) - (fp2[n] - fm2[n])) / (12 * Double(h))
                    worst = max(worst, abs(fd - Double(jv[(i * k + j) * d + c]))); scale = max(scale, abs(fd))
                }
            }
        }
        if verbose { print("\(label): JVP relative error \(worst / scale)") }
        XCTAssertLessThan(worst / scale, tolerance, "\(label): JVP vs finite differences (error \(worst), scale \(scale))",
                          file: file, line: line)

        // VJP of L = Σ ⟨w, v⟩ for trainable parameters: every element of the
        // pre-op shift (the op's input gradient) up to 512, else 48 spread
        // ones; every element of other tensors up to 64, else 24 spread ones.
        // w weights 24 outputs per sample: the dense Linear after the op still
        // routes every op output into them, while the float32 rounding noise
        // of L (∝ √(weighted outputs)) stays that of a small network.
        var w = random([batch, d], seed: 13).scalars
        for i in w.indices where i % d >= 24 { w[i] = 0 }
        let diff = try GraphDifferentiator(graph: g)
        let gws = GraphWorkspace()
        _ = run(diff.executor, t, x, context, ws: gws, record: true)
        w.withUnsafeBufferPointer { diff.backward(outputGradient: $0.baseAddress!, workspace: gws) }
        let probe = try GraphDifferentiator(graph: g)
        let pws = GraphWorkspace()
        func loss() -> Double {
            zip(run(probe.executor, t, x, context, ws: pws, record: false), w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        var results: [(name: String, worst: Double, scale: Double)] = []
        var globalScale = 1e-6
        for p in diff.trainableIndices {
            let name = g.parameters[p].name
            let n = g.parameters[p].tensor.count
            let analytic = diff.withGradient(p, workspace: gws) { Array($0) }
            let all = n <= 64 || (name == "pre.shift" && n <= 512)
            var pw = 0.0, ps = 1e-6
            for e in stride(from: 0, to: n, by: all ? 1 : max(1, n / (name == "pre.shift" ? 48 : 24))) {
                let original = probe.withParameter(p) { $0[e] }
                func shifted(_ m: Float) -> Double {
                    probe.withParameter(p) { $0[e] = original + m * h }
                    return loss()
                }
                let fd = (8 * (shifted(1) - shifted(-1)) - (shifted(2) - shifted(-2))) / (12 * Double(h))
                probe.withParameter(p) { $0[e] = original }
                pw = max(pw, abs(fd - Double(analytic[e]))); ps = max(ps, abs(fd))
            }
            results.append((name, pw, ps))
            globalScale = max(globalScale, ps)
        }
        for r in results {
            let s = max(r.scale, 1e-2 * globalScale)
            if verbose { print("\(label): VJP '\(r.name)' relative error \(r.worst / s)") }
            XCTAssertLessThan(r.worst / s, tolerance,
                              "\(label): VJP of '\(r.name)' vs finite differences (error \(r.worst), scale \(s))",
                              file: file, line: line)
        }
    }

    // MARK: Convolution

    struct ConvCase {
        var x: [Int], cout: Int, kernel: [Int], strides: [Int], padsBegin: [Int], padsEnd: [Int], dilations: [Int]
        var groups: Int, bias = true
        var op: FlowRuntime.Operation {
            .conv(kernel: kernel, strides: strides, padsBegin: padsBegin, padsEnd: padsEnd, dilations: dilations, groups: groups)
        }
        var weightShape: [Int] { [cout, x[0] / groups] + kernel }
    }

    let convCases: [ConvCase] = [
        // 3×3 stride 1, symmetric pads.
        ConvCase(x: [2, 5, 6], cout: 3, kernel: [3, 3], strides: [1, 1], padsBegin: [1, 1], padsEnd: [1, 1], dilations: [1, 1], groups: 1),
        // stride 2, asymmetric pads.
        ConvCase(x: [2, 5, 6], cout: 3, kernel: [3, 3], strides: [2, 2], padsBegin: [1, 0], padsEnd: [0, 2], dilations: [1, 1], groups: 1),
        // dilation 2, non-square kernel, mixed stride, no bias.
        ConvCase(x: [2, 5, 6], cout: 2, kernel: [2, 3], strides: [1, 2], padsBegin: [2, 1], padsEnd: [1, 2], dilations: [2, 2],
                 groups: 1, bias: false),
        // groups 2.
        ConvCase(x: [4, 5, 6], cout: 6, kernel: [3, 3], strides: [1, 1], padsBegin: [1, 1], padsEnd: [1, 1], dilations: [1, 1], groups: 2),
        // depthwise, channel multiplier 2, stride 2 on W.
        ConvCase(x: [4, 5, 6], cout: 8, kernel: [3, 3], strides: [1, 2], padsBegin: [1, 1], padsEnd: [1, 0], dilations: [1, 1], groups: 4),
        // depthwise, multiplier 1.
        ConvCase(x: [3, 4, 5], cout: 3, kernel: [3, 3], strides: [1, 1], padsBegin: [0, 1], padsEnd: [2, 1], dilations: [1, 1], groups: 3),
        // 1×1.
        ConvCase(x: [2, 5, 6], cout: 5, kernel: [1, 1], strides: [1, 1], padsBegin: [0, 0], padsEnd: [0, 0], dilations: [1, 1], groups: 1),
        // 1-D per-sample [C, L]: stride 2 asymmetric pads; dilation 2 with groups.
        ConvCase(x: [3, 10], cout: 4, kernel: [3], strides: [2], padsBegin: [1], padsEnd: [2], dilations: [1], groups: 1),
        ConvCase(x: [4, 9], cout: 2, kernel: [3], strides: [1], padsBegin: [2], padsEnd: [1], dilations: [2], groups: 2),
        // stride 3 > kernel 2: input rows and columns no tap reads.
        ConvCase(x: [2, 7, 8], cout: 3, kernel: [2, 2], strides: [3, 3], padsBegin: [0, 1], padsEnd: [1, 0], dilations: [1, 1], groups: 1),
        // Past the kernels' blocking (conv.c): 90 output positions (> 64 per
        // forward block) and 17 output channels (> one 16-wide panel); 576 rows
        // of k (> 512 per forward block); 272 positions (> 256 per
        // backward-weight block).
        ConvCase(x: [4, 10, 9], cout: 17, kernel: [3, 3], strides: [1, 1], padsBegin: [1, 1], padsEnd: [1, 1], dilations: [1, 1], groups: 1),
        ConvCase(x: [64, 3, 3], cout: 5, kernel: [3, 3], strides: [1, 1], padsBegin: [1, 1], padsEnd: [1, 1], dilations: [1, 1], groups: 1),
        ConvCase(x: [2, 16, 17], cout: 4, kernel: [3, 3], strides: [1, 1], padsBegin: [1, 1], padsEnd: [1, 1], dilations: [1, 1], groups: 2),
    ]

    /// Naive convolution of one sample in Double (1-D runs as H = 1).
    func convReference(_ x: ArraySlice<Float>, _ c: ConvCase, weight w: [Float], bias: [Float]?) -> (shape: [Int], y: [Double]) {
        let two = c.kernel.count == 2
        let cin = c.x[0], H = two ? c.x[1] : 1, W = c.x.last!
        let kh = two ? c.kernel[0] : 1, kw = c.kernel.last!
        let sh = two ? c.strides[0] : 1, sw = c.strides.last!
        let pt = two ? c.padsBegin[0] : 0, pl = c.padsBegin.last!, pb = two ? c.padsEnd[0] : 0, pr = c.padsEnd.last!
        let dh = two ? c.dilations[0] : 1, dw = c.dilations.last!
        let OH = (H + pt + pb - dh * (kh - 1) - 1) / sh + 1, OW = (W + pl + pr - dw * (kw - 1) - 1) / sw + 1
        let cinG = cin / c.groups, coutG = c.cout / c.groups
        let x0 = x.startIndex
        var y = [Double](repeating: 0, count: c.cout * OH * OW)
        for co in 0..<c.cout {
            let g = co / coutG
            for oy in 0..<OH {
                for ox in 0..<OW {
                    var acc = Double(bias?[co] ?? 0)
                    for ci in 0..<cinG {
                        for ky in 0..<kh {
                            let iy = oy * sh - pt + ky * dh
                            if iy < 0 || iy >= H { continue }
                            for kx in 0..<kw {
                                let ix = ox * sw - pl + kx * dw
                                if ix < 0 || ix >= W { continue }
                                acc += Double(x[x0 + ((g * cinG + ci) * H + iy) * W + ix]) * Double(w[((co * cinG + ci) * kh + ky) * kw + kx])
                            }
                        }
                    }
                    y[(co * OH + oy) * OW + ox] = acc
                }
            }
        }
        return (two ? [c.cout, OH, OW] : [c.cout, OW], y)
    }

    func convGraph(_ c: ConvCase, index: Int, pre: Bool) throws -> Graph {
        try graph(c.x, seed: UInt64(10 * index + 1), pre: pre) { b, u in
            let w = b.parameter("conv.weight", self.random(c.weightShape, seed: UInt64(500 + index), scale: 0.4))
            var inputs = [u, w]
            if c.bias { inputs.append(b.parameter("conv.bias", self.random([c.cout], seed: UInt64(600 + index), scale: 0.3))) }
            return try b.apply(c.op, inputs, name: "op")
        }
    }

    func testConvDerivatives() throws {
        for (i, c) in convCases.enumerated() {
            try checkDerivatives(try convGraph(c, index: i, pre: true), "Conv case \(i) \(c.x) k\(c.kernel) s\(c.strides) g\(c.groups)")
        }
    }

    func testConvForwardMatchesNaiveLoops() throws {
        for (i, c) in convCases.enumerated() {
            let g = try convGraph(c, index: i, pre: false)
            let batch = 2, d = c.x.elementCount
            let x = random([batch, d], seed: 21).scalars
            let out = try nodeOutputs(g, x: x, batch: batch, names: ["op"])["op"]!
            let w = random(c.weightShape, seed: UInt64(500 + i), scale: 0.4).scalars
            let bias = c.bias ? random([c.cout], seed: UInt64(600 + i), scale: 0.3).scalars : nil
            var expected: [Double] = []
            for s in 0..<batch {
                let r = convReference(x[(s * d)..<((s + 1) * d)], c, weight: w, bias: bias)
                XCTAssertEqual(out.shape, r.shape, "Conv case \(i): output shape")
                expected += r.y
            }
            assertClose(out.values, expected, "Conv case \(i) forward")
        }
    }

    // MARK: ConvTranspose

    struct ConvTransposeCase {
        var x: [Int], cout: Int, kernel: [Int], strides: [Int], padsBegin: [Int], padsEnd: [Int], dilations: [Int]
        var groups: Int, outputPadding: [Int]
        /// As the importer builds it: the forward conv's end pads absorb the output padding.
        var op: FlowRuntime.Operation {
            let conv = ConvOp(spatialRank: kernel.count, kernel: kernel, strides: strides, padsBegin: padsBegin,
                              padsEnd: zip(padsEnd, outputPadding).map { $0 - $1 }, dilations: dilations, groups: groups)
            return FlowRuntime.Operation(ConvTransposeOp(conv: conv, outputPadding: outputPadding))
        }
        var weightShape: [Int] { [x[0], cout / groups] + kernel }
    }

    let convTransposeCases: [ConvTransposeCase] = [
        ConvTransposeCase(x: [2, 3, 4], cout: 3, kernel: [3, 3], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1],
                          dilations: [1, 1], groups: 1, outputPadding: [0, 0]),
        // output padding 1 (PyTorch's exact 2× upsampling), and on one axis beyond the end pad.
        ConvTransposeCase(x: [2, 3, 4], cout: 3, kernel: [3, 3], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1],
                          dilations: [1, 1], groups: 1, outputPadding: [1, 1]),
        ConvTransposeCase(x: [2, 3, 4], cout: 2, kernel: [4, 3], strides: [2, 3], padsBegin: [1, 0], padsEnd: [2, 0],
                          dilations: [1, 1], groups: 1, outputPadding: [1, 2]),
        // groups 2 with dilation.
        ConvTransposeCase(x: [4, 3, 4], cout: 6, kernel: [3, 3], strides: [2, 1], padsBegin: [0, 1], padsEnd: [1, 2],
                          dilations: [1, 2], groups: 2, outputPadding: [1, 0]),
        // stride 3 > kernel 2: output rows and columns no tap reaches (bias only).
        ConvTransposeCase(x: [2, 3, 3], cout: 2, kernel: [2, 2], strides: [3, 3], padsBegin: [0, 1], padsEnd: [0, 0],
                          dilations: [1, 1], groups: 1, outputPadding: [2, 1]),
        // 1-D per-sample [C, L].
        ConvTransposeCase(x: [3, 7], cout: 4, kernel: [3], strides: [2], padsBegin: [1], padsEnd: [0],
                          dilations: [1], groups: 1, outputPadding: [1]),
        ConvTransposeCase(x: [4, 6], cout: 2, kernel: [2], strides: [1], padsBegin: [0], padsEnd: [1],
                          dilations: [3], groups: 2, outputPadding: [0]),
        // 90 input and 360 output positions: several kernel blocks.
        ConvTransposeCase(x: [4, 9, 10], cout: 2, kernel: [3, 3], strides: [2, 2], padsBegin: [1, 1], padsEnd: [1, 1],
                          dilations: [1, 1], groups: 1, outputPadding: [1, 1]),
    ]

    /// Naive transposed convolution of one sample in Double:
    /// y[co, o] = b[co] + Σ x[ci, i] W[ci, co_g, k] over o = i·s − pb + k·d.
    func convTransposeReference(_ x: ArraySlice<Float>, _ c0: ConvTransposeCase, weight w: [Float], bias: [Float])
        -> (shape: [Int], y: [Double]) {
        var c = c0
        if c.kernel.count == 1 {  // 1-D: the 2-D op on H = 1
            c = ConvTransposeCase(x: [c.x[0], 1, c.x[1]], cout: c.cout, kernel: [1] + c.kernel, strides: [1] + c.strides,
                                  padsBegin: [0] + c.padsBegin, padsEnd: [0] + c.padsEnd, dilations: [1] + c.dilations,
                                  groups: c.groups, outputPadding: [0] + c.outputPadding)
        }
        let cin = c.x[0], H = c.x[1], W = c.x[2], kh = c.kernel[0], kw = c.kernel[1]
        let OH = c.strides[0] * (H - 1) + c.outputPadding[0] + c.dilations[0] * (kh - 1) + 1 - c.padsBegin[0] - c.padsEnd[0]
        let OW = c.strides[1] * (W - 1) + c.outputPadding[1] + c.dilations[1] * (kw - 1) + 1 - c.padsBegin[1] - c.padsEnd[1]
        let cinG = cin / c.groups, coutG = c.cout / c.groups
        var y = [Double](repeating: 0, count: c.cout * OH * OW)
        for co in 0..<c.cout { for p in 0..<(OH * OW) { y[co * OH * OW + p] = Double(bias[co]) } }
        let x0 = x.startIndex
        for ci in 0..<cin {
            let g = ci / cinG
            for iy in 0..<H {
                for ix in 0..<W {
                    let xv = Double(x[x0 + (ci * H + iy) * W + ix])
                    for cg in 0..<coutG {
                        let co = g * coutG + cg
                        for ky in 0..<kh {
                            let oy = iy * c.strides[0] - c.padsBegin[0] + ky * c.dilations[0]
                            if oy < 0 || oy >= OH { continue }
                            for kx in 0..<kw {
                                let ox = ix * c.strides[1] - c.padsBegin[1] + kx * c.dilations[1]
                                if ox < 0 || ox >= OW { continue }
                                y[(co * OH + oy) * OW + ox] += xv * Double(w[((ci * coutG + cg) * kh + ky) * kw + kx])
                            }
                        }
                    }
                }
            }
        }
        return (c0.kernel.count == 1 ? [c.cout, OW] : [c.cout, OH, OW], y)
    }

    func convTransposeGraph(_ c: ConvTransposeCase, index: Int, pre: Bool) throws -> Graph {
        try graph(c.x, seed: UInt64(10 * index + 2), pre: pre) { b, u in
            let w = b.parameter("deconv.weight", self.random(c.weightShape, seed: UInt64(700 + index), scale: 0.4))
            let bias = b.parameter("deconv.bias", self.random([c.cout], seed: UInt64(800 + index), scale: 0.3))
            return try b.apply(c.op, [u, w, bias], name: "op")
        }
    }

    func testConvTransposeDerivatives() throws {
        for (i, c) in convTransposeCases.enumerated() {
            try checkDerivatives(try convTransposeGraph(c, index: i, pre: true),
                                 "ConvTranspose case \(i) s\(c.strides) op\(c.outputPadding) g\(c.groups)")
        }
    }

    func testConvTransposeForwardMatchesNaiveLoops() throws {
        for (i, c) in convTransposeCases.enumerated() {
            let g = try convTransposeGraph(c, index: i, pre: false)
            let batch = 2, d = c.x.elementCount
            let x = random([batch, d], seed: 22).scalars
            let out = try nodeOutputs(g, x: x, batch: batch, names: ["op"])["op"]!
            let w = random(c.weightShape, seed: UInt64(700 + i), scale: 0.4).scalars
            let bias = random([c.cout], seed: UInt64(800 + i), scale: 0.3).scalars
            var expected: [Double] = []
            for s in 0..<batch {
                let r = convTransposeReference(x[(s * d)..<((s + 1) * d)], c, weight: w, bias: bias)
                XCTAssertEqual(out.shape, r.shape, "ConvTranspose case \(i): output shape")
                expected += r.y
            }
            assertClose(out.values, expected, "ConvTranspose case \(i) forward")
        }
    }

    // MARK: GroupNorm

    let groupNormCases: [(shape: [Int], groups: Int, silu: Bool)] = [
        ([4, 3, 5], 1, false), ([4, 3, 5], 2, false), ([4, 3, 5], 4, false),
        ([4, 3, 5], 1, true), ([4, 3, 5], 2, true), ([4, 3, 5], 4, true),
        ([6, 7], 3, true),
        ([16, 6, 6], 4, true),   // 144 elements per group: the vector paths of normalize.c
    ]

    func groupNormGraph(_ i: Int, pre: Bool) throws -> Graph {
        let c = groupNormCases[i]
        return try graph(c.shape, seed: UInt64(10 * i + 3), pre: pre) { b, u in
            let gamma = b.parameter("gn.gamma", self.random([c.shape[0]], seed: UInt64(900 + i), scale: 0.3, offset: 1))
            let beta = b.parameter("gn.beta", self.random([c.shape[0]], seed: UInt64(950 + i), scale: 0.5))
            return try b.apply(.groupNorm(groups: c.groups, epsilon: 1e-5, silu: c.silu), [u, gamma, beta], name: "op")
        }
    }

    func testGroupNormDerivatives() throws {
        for i in groupNormCases.indices {
            let c = groupNormCases[i]
            try checkDerivatives(try groupNormGraph(i, pre: true), "GroupNorm \(c.shape) groups \(c.groups) silu \(c.silu)")
        }
    }

    func testGroupNormForwardMatchesNaiveLoops() throws {
        for i in groupNormCases.indices {
            let c = groupNormCases[i]
            let g = try groupNormGraph(i, pre: false)
            let batch = 2, d = c.shape.elementCount, ch = c.shape[0], spatial = d / ch, cpg = ch / c.groups
            var x = random([batch, d], seed: 23, scale: 2).scalars
            for j in x.indices { x[j] += Float(j % 3) }  // nonzero group means
            let out = try nodeOutputs(g, x: x, batch: batch, names: ["op"])["op"]!
            let gamma = random([ch], seed: UInt64(900 + i), scale: 0.3, offset: 1).scalars
            let beta = random([ch], seed: UInt64(950 + i), scale: 0.5).scalars
            var expected = [Double](repeating: 0, count: batch * d)
            for s in 0..<batch {
                for grp in 0..<c.groups {
                    let lo = s * d + grp * cpg * spatial, hi = lo + cpg * spatial
                    let vals = x[lo..<hi].map(Double.init)
                    let mean = vals.reduce(0, +) / Double(vals.count)
                    let variance = vals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(vals.count)
                    for j in lo..<hi {
                        let channel = (j - s * d) / spatial
                        var z = (Double(x[j]) - mean) / (variance + 1e-5).squareRoot() * Double(gamma[channel]) + Double(beta[channel])
                        if c.silu { z = z / (1 + exp(-z)) }
                        expected[j] = z
                    }
                }
            }
            assertClose(out.values, expected, "GroupNorm \(c.shape) groups \(c.groups) silu \(c.silu) forward")
        }
    }

    // MARK: Softmax

    let softmaxCases: [(shape: [Int], axis: Int, coerced: Bool)] = [
        ([2, 5, 6], -1, false), ([2, 5, 6], 1, false), ([2, 5, 6], 0, false), ([2, 5, 6], 1, true), ([2, 5, 6], 0, true),
        ([3, 37], -1, false),    // rows longer than one vector, with a tail
    ]

    func softmaxGraph(_ i: Int, pre: Bool) throws -> Graph {
        let c = softmaxCases[i]
        return try graph(c.shape, seed: UInt64(10 * i + 4), pre: pre) { b, u in
            // Logits × 3: peaked distributions, so derivatives are not all ≈ 1/n.
            let gain = b.parameter("gain", Tensor(shape: [], scalars: [pre ? 3 : 1]), trainable: false)
            return try b.apply(FlowRuntime.Operation(SoftmaxOp(axis: c.axis, coerced: c.coerced)), [try b.mul(u, gain)], name: "op")
        }
    }

    func testSoftmaxDerivatives() throws {
        for i in softmaxCases.indices {
            let c = softmaxCases[i]
            try checkDerivatives(try softmaxGraph(i, pre: true), "Softmax axis \(c.axis) coerced \(c.coerced)")
        }
    }

    func testSoftmaxForwardMatchesNaiveLoops() throws {
        for i in softmaxCases.indices {
            let c = softmaxCases[i]
            let g = try softmaxGraph(i, pre: false)
            let batch = 2, d = c.shape.elementCount
            let x = random([batch, d], seed: 24, scale: 2).scalars
            let out = try nodeOutputs(g, x: x, batch: batch, names: ["op"])["op"]!
            // Group elements by their index with the softmax axes removed.
            let a = c.axis < 0 ? c.axis + c.shape.count : c.axis
            let axes = c.coerced ? Array(a..<c.shape.count) : [a]
            var expected = [Double](repeating: 0, count: batch * d)
            var groups: [[Int]: [Int]] = [:]
            for flat in 0..<d {
                var rem = flat, index = [Int](repeating: 0, count: c.shape.count)
                for dim in (0..<c.shape.count).reversed() { index[dim] = rem % c.shape[dim]; rem /= c.shape[dim] }
                for ax in axes { index[ax] = -1 }
                groups[index, default: []].append(flat)
            }
            for s in 0..<batch {
                for members in groups.values {
                    let e = members.map { exp(Double(x[s * d + $0])) }
                    let sum = e.reduce(0, +)
                    for (m, v) in zip(members, e) { expected[s * d + m] = v / sum }
                }
            }
            assertClose(out.values, expected, tolerance: 1e-6, "Softmax axis \(c.axis) coerced \(c.coerced) forward")
        }
    }

    // MARK: MatMul

    /// (A shape, B shape, transposeB); A and B are Linear maps of the flattened input.
    let matMulCases: [(a: [Int], b: [Int], transposeB: Bool)] = [
        ([3, 4], [4, 5], false),
        ([2, 1, 3, 4], [3, 4, 5], false),       // leading [2, 1] with [3]
        ([2, 1, 3, 4], [1, 3, 5, 4], true),      // leading [2, 1] with [1, 3], B read as [N, K]
        ([3, 4], [2, 5, 4], true),               // A broadcast over B's leading axis
        ([2, 3, 4], [2, 4, 3], false),
    ]

    func matMulGraph(_ i: Int, pre: Bool) throws -> Graph {
        let c = matMulCases[i]
        return try graph([2, 3, 4], seed: UInt64(10 * i + 5), pre: pre) { b, u in
            let flat = try b.apply(.reshape(shape: [24]), [u])
            let la = try b.linear(flat, weight: self.random([c.a.elementCount, 24], seed: UInt64(1000 + i), scale: 0.3),
                                  bias: nil, name: "la")
            let lb = try b.linear(flat, weight: self.random([c.b.elementCount, 24], seed: UInt64(1100 + i), scale: 0.3),
                                  bias: self.random([c.b.elementCount], seed: UInt64(1200 + i), scale: 0.2), name: "lb")
            let a = try b.apply(.reshape(shape: c.a), [la], name: "A")
            let bb = try b.apply(.reshape(shape: c.b), [lb], name: "B")
            return try b.apply(.matMul(transposeB: c.transposeB), [a, bb], name: "op")
        }
    }

    func testMatMulDerivatives() throws {
        for i in matMulCases.indices {
            let c = matMulCases[i]
            try checkDerivatives(try matMulGraph(i, pre: true), "MatMul \(c.a) × \(c.b)\(c.transposeB ? "ᵀ" : "")")
        }
        // A · Aᵀ: both operands carry the same tangent.
        try checkDerivatives(try graph([2, 3, 4], seed: 77) { b, u in
            try b.apply(.matMul(transposeB: true), [u, u], name: "op")
        }, "MatMul A·Aᵀ")
    }

    func testMatMulForwardMatchesNaiveLoops() throws {
        for i in matMulCases.indices {
            let c = matMulCases[i]
            let g = try matMulGraph(i, pre: false)
            let batch = 2
            let x = random([batch, 24], seed: 25).scalars
            let outs = try nodeOutputs(g, x: x, batch: batch, names: ["A", "B", "op"])
            let a = outs["A"]!.values, bv = outs["B"]!.values, y = outs["op"]!
            // Broadcast leading axes (numpy rules).
            let la = Array(c.a.dropLast(2)), lb = Array(c.b.dropLast(2))
            let rank = max(la.count, lb.count)
            let pa = [Int](repeating: 1, count: rank - la.count) + la, pb = [Int](repeating: 1, count: rank - lb.count) + lb
            let lead = zip(pa, pb).map { max($0, $1) }
            let m = c.a[c.a.count - 2], k = c.a.last!
            let n = c.transposeB ? c.b[c.b.count - 2] : c.b.last!
            XCTAssertEqual(y.shape, lead + [m, n], "MatMul case \(i): output shape")
            let sizeA = c.a.elementCount, sizeB = c.b.elementCount
            var expected: [Double] = []
            for s in 0..<batch {
                for li in 0..<lead.reduce(1, *) {
                    var rem = li, ia = 0, ib = 0, stA = 1, stB = 1
                    for dim in (0..<rank).reversed() {
                        let e = rem % lead[dim]; rem /= lead[dim]
                        ia += (pa[dim] == 1 ? 0 : e) * stA; stA *= pa[dim]
                        ib += (pb[dim] == 1 ? 0 : e) * stB; stB *= pb[dim]
                    }
                    for r in 0..<m {
                        for col in 0..<n {
                            var acc = 0.0
                            for q in 0..<k {
                                let av = a[s * sizeA + ia * m * k + r * k + q]
                                let bq = c.transposeB ? bv[s * sizeB + ib * n * k + col * k + q] : bv[s * sizeB + ib * k * n + q * n + col]
                                acc += Double(av) * Double(bq)
                            }
                            expected.append(acc)
                        }
                    }
                }
            }
            assertClose(y.values, expected, "MatMul case \(i) forward")
        }
    }

    // MARK: Index maps

    /// One index-map op on per-sample `input`: how to build it, its output
    /// shape, and the input index each output index reads (the reference).
    struct IndexCase {
        var label: String
        var input: [Int]
        var output: [Int]
        var make: ([Int]) throws -> FlowRuntime.Operation
        var source: ([Int]) -> [Int]
    }

    var transposeCases: [IndexCase] {
        // The first three swap the last two merged axes (`fr_transpose`);
        // the rest keep the innermost axis innermost (`fr_permute_rows`:
        // runs of 6, 5 and 19 floats, the last two with a masked tail).
        let cases: [(perm: [Int], shape: [Int])] = [
            ([2, 0, 1], [2, 5, 6]), ([1, 2, 0], [2, 5, 6]), ([0, 2, 1], [2, 5, 6]),
            ([1, 0, 2], [2, 5, 6]), ([1, 2, 0, 3], [3, 2, 4, 5]), ([2, 0, 1, 3], [2, 3, 2, 19]),
        ]
        return cases.map { c in
            let perm = c.perm
            return IndexCase(label: "Transpose \(perm) of \(c.shape)", input: c.shape, output: perm.map { c.shape[$0] },
                             make: { FlowRuntime.Operation(try TransposeOp(perm: perm, inputShape: $0, node: "op")) },
                             source: { o in (0..<perm.count).map { axis in o[perm.firstIndex(of: axis)!] } })
        }
    }

    var sliceCases: [IndexCase] {
        let cases: [(starts: [Int], steps: [Int], shape: [Int])] = [
            ([1, 4, 0], [1, -2, 2], [1, 3, 3]),
            ([0, 1, 5], [1, 1, -1], [2, 3, 6]),
            ([1, 0, 1], [-1, 2, 3], [2, 3, 2]),
        ]
        return cases.map { c in
            IndexCase(label: "Slice starts \(c.starts) steps \(c.steps)", input: [2, 5, 6], output: c.shape,
                      make: { FlowRuntime.Operation(try SliceOp(starts: c.starts, steps: c.steps, shape: c.shape, inputShape: $0, node: "op")) },
                      source: { o in (0..<3).map { c.starts[$0] + o[$0] * c.steps[$0] } })
        }
    }

    var tileCases: [IndexCase] {
        [[1, 2, 3], [2, 1, 1]].map { r in
            IndexCase(label: "Tile \(r)", input: [2, 3, 4], output: [2 * r[0], 3 * r[1], 4 * r[2]],
                      make: { FlowRuntime.Operation(try TileOp(repeats: r, inputShape: $0, node: "op")) },
                      source: { o in [o[0] % 2, o[1] % 3, o[2] % 4] })
        }
    }

    var gatherCases: [IndexCase] {
        [
            // Repeated index: the VJP accumulates.
            IndexCase(label: "Gather axis 1 [[4, 0], [0, 2]]", input: [2, 5, 6], output: [2, 2, 2, 6],
                      make: { FlowRuntime.Operation(try GatherOp(axis: 1, indices: [4, 0, 0, 2], indexShape: [2, 2], inputShape: $0, node: "op")) },
                      source: { o in [o[0], [4, 0, 0, 2][o[1] * 2 + o[2]], o[3]] }),
            IndexCase(label: "Gather axis 2 [5, 1, 3, 1]", input: [2, 5, 6], output: [2, 5, 4],
                      make: { FlowRuntime.Operation(try GatherOp(axis: 2, indices: [5, 1, 3, 1], indexShape: [4], inputShape: $0, node: "op")) },
                      source: { o in [o[0], o[1], [5, 1, 3, 1][o[2]]] }),
            // A scalar index drops the axis.
            IndexCase(label: "Gather axis 0 scalar 1", input: [2, 5, 6], output: [5, 6],
                      make: { FlowRuntime.Operation(try GatherOp(axis: 0, indices: [1], indexShape: [], inputShape: $0, node: "op")) },
                      source: { o in [1, o[0], o[1]] }),
        ]
    }

    func indexGraph(_ c: IndexCase, pre: Bool) throws -> Graph {
        try graph(c.input, pre: pre) { b, u in try b.apply(try c.make(b.shape(of: u)), [u], name: "op") }
    }

    /// Exact forward check: out[o] = x[source(o)] for every output index.
    func checkIndexForward(_ c: IndexCase, file: StaticString = #filePath, line: UInt = #line) throws {
        let batch = 2, d = c.input.elementCount
        let x = random([batch, d], seed: 30).scalars
        let out = try nodeOutputs(try indexGraph(c, pre: false), x: x, batch: batch, names: ["op"])["op"]!
        XCTAssertEqual(out.shape, c.output, "\(c.label): output shape", file: file, line: line)
        var expected: [Double] = []
        let n = c.output.elementCount
        for s in 0..<batch {
            for flat in 0..<n {
                var rem = flat, o = [Int](repeating: 0, count: c.output.count)
                for dim in (0..<c.output.count).reversed() { o[dim] = rem % c.output[dim]; rem /= c.output[dim] }
                let src = c.source(o)
                var index = 0
                for dim in 0..<c.input.count { index = index * c.input[dim] + src[dim] }
                expected.append(Double(x[s * d + index]))
            }
        }
        assertClose(out.values, expected, tolerance: 0, "\(c.label) forward", file: file, line: line)
    }

    func testTransposeDerivatives() throws {
        for c in transposeCases { try checkDerivatives(try indexGraph(c, pre: true), c.label) }
    }

    func testSliceDerivatives() throws {
        for c in sliceCases { try checkDerivatives(try indexGraph(c, pre: true), c.label) }
    }

    func testTileDerivatives() throws {
        for c in tileCases { try checkDerivatives(try indexGraph(c, pre: true), c.label) }
    }

    func testGatherDerivatives() throws {
        for c in gatherCases { try checkDerivatives(try indexGraph(c, pre: true), c.label) }
    }

    /// Broadcasting binary ops on the row kernel's shapes (`fr_binary_rows`:
    /// [T, F] against a per-sample [1, F] row, a per-sample [T, 1] column and
    /// a parameter [F], both operand orders), bit for bit against Float
    /// arithmetic on the same elements.
    func testBroadcastBinaryRowsMatchElementwise() throws {
        let (rows, cols) = (4, 6)
        let w = random([cols], seed: 41, offset: 2)
        let g = try graph([rows, cols], pre: false) { b, x in
            let row = try b.apply(FlowRuntime.Operation(try SliceOp(starts: [1, 0], steps: [1, 1], shape: [1, cols],
                                                                    inputShape: [rows, cols], node: "row")), [x], name: "row")
            let col = try b.apply(FlowRuntime.Operation(try SliceOp(starts: [0, 2], steps: [1, 1], shape: [rows, 1],
                                                                    inputShape: [rows, cols], node: "col")), [x], name: "col")
            let p = b.parameter("w", w)
            let m = try b.mul(x, row, name: "m")                                             // [T, F] * [1, F]
            let a = try b.add(row, m, name: "a")                                             // [1, F] + [T, F]
            let d = try b.apply(.binary(.div), [a, p], name: "d")                            // [T, F] / [F]
            return try b.apply(.binary(.sub), [col, d], name: "s")                           // [T, 1] - [T, F]
        }
        let batch = 3, d = rows * cols
        let x = random([batch, d], seed: 42).scalars
        let out = try nodeOutputs(g, x: x, batch: batch, names: ["s"])["s"]!.values
        var expected: [Double] = []
        for s in 0..<batch {
            let xs = Array(x[(s * d)..<((s + 1) * d)])
            for r in 0..<rows {
                for c in 0..<cols {
                    let m = xs[r * cols + c] * xs[cols + c]
                    let a = xs[cols + c] + m
                    let q = a / w.scalars[c]
                    expected.append(Double(xs[r * cols + 2] - q))
                }
            }
        }
        assertClose(out, expected, tolerance: 0, "broadcast binary rows")
    }

    /// Inference passes give a Reshape's output its input's buffer: values
    /// read after the Reshape (its input, a Reshape of x, a Reshape of a
    /// Reshape) keep their values, and the inference pass equals the
    /// recorded one (`nodeOutputs` checks) and the arithmetic below.
    func testReshapeViewsKeepTheirValues() throws {
        let g = try graph([2, 3, 4], pre: false) { b, x in
            let r = try b.apply(.reshape(shape: [6, 4]), [x], name: "r")        // a view of x
            let rr = try b.apply(.reshape(shape: [24]), [r], name: "rr")        // a view of a view
            let y = try b.mul(rr, rr, name: "y")
            let yv = try b.apply(.reshape(shape: [2, 3, 4]), [y], name: "yv")   // y read after
            let z = try b.add(yv, x, name: "z")                                 // x read after its views
            let w = try b.add(try b.apply(.reshape(shape: [2, 12]), [y], name: "y2"),
                              try b.apply(.reshape(shape: [2, 12]), [z], name: "z2"), name: "w")
            return try b.apply(.reshape(shape: [24]), [w], name: "out")
        }
        let batch = 3
        let x = random([batch, 24], seed: 31).scalars
        let out = try nodeOutputs(g, x: x, batch: batch, names: ["out", "r", "z"])
        let expected = x.map { v -> Double in let y = v * v, z = y + v; return Double(y + z) }
        assertClose(out["out"]!.values, expected, tolerance: 0, "reshape views")
        assertClose(out["r"]!.values, x.map(Double.init), tolerance: 0, "reshape of x")
    }

    func testTransposeSliceTileGatherForwardMatchReference() throws {
        for c in transposeCases + sliceCases + tileCases + gatherCases { try checkIndexForward(c) }
    }

    let padCases: [(before: [Int], after: [Int], mode: PadOp.Mode, value: Float)] = [
        ([0, 1, 2], [1, 0, 1], .constant, 0.7),
        ([0, 2, 1], [0, 1, 3], .reflect, 0),
        ([0, 4, 5], [1, 4, 5], .reflect, 0),   // the largest reflect pads: extent − 1
        ([1, 2, 0], [0, 3, 2], .edge, 0),
    ]

    func padGraph(_ i: Int, pre: Bool) throws -> Graph {
        let c = padCases[i]
        return try graph([2, 5, 6], seed: UInt64(10 * i + 6), pre: pre) { b, u in
            try b.apply(FlowRuntime.Operation(try PadOp(before: c.before, after: c.after, mode: c.mode, value: c.value,
                                            inputShape: b.shape(of: u), node: "op")), [u], name: "op")
        }
    }

    func testPadDerivatives() throws {
        for i in padCases.indices { try checkDerivatives(try padGraph(i, pre: true), "Pad \(padCases[i].mode)") }
    }

    /// numpy.pad semantics: constant, reflect (mirror without the edge), edge.
    func testPadForwardMatchesReference() throws {
        let shape = [2, 5, 6]
        for i in padCases.indices {
            let c = padCases[i]
            let batch = 2, d = shape.elementCount
            let x = random([batch, d], seed: 26).scalars
            let out = try nodeOutputs(try padGraph(i, pre: false), x: x, batch: batch, names: ["op"])["op"]!
            let oshape = (0..<3).map { shape[$0] + c.before[$0] + c.after[$0] }
            XCTAssertEqual(out.shape, oshape)
            var expected: [Double] = []
            for s in 0..<batch {
                for o0 in 0..<oshape[0] { for o1 in 0..<oshape[1] { for o2 in 0..<oshape[2] {
                    var src: [Int] = []
                    var inside = true
                    for (dim, o) in [o0, o1, o2].enumerated() {
                        var j = o - c.before[dim]
                        let n = shape[dim]
                        switch c.mode {
                        case .constant: if j < 0 || j >= n { inside = false }
                        case .edge: j = min(max(j, 0), n - 1)
                        case .reflect:
                            while j < 0 || j >= n { j = j < 0 ? -j : 2 * (n - 1) - j }
                        }
                        src.append(j)
                    }
                    expected.append(inside ? Double(x[s * d + (src[0] * shape[1] + src[1]) * shape[2] + src[2]]) : Double(c.value))
                } } }
            }
            assertClose(out.values, expected, tolerance: 0, "Pad \(c.mode) forward")
        }
    }

    /// (input, output, transform, rounding, reference source index for output o on an axis of n → m).
    let resizeCases: [(x: [Int], out: [Int], transform: ResizeOp.Transform, rounding: ResizeOp.Rounding,
                       reference: (Int, Int, Int) -> Int)] = [
        // PyTorch 'nearest' (legacy): floor(o · n / m).
        ([2, 3, 4], [2, 6, 12], .asymmetric, .floor, { o, n, m in min(o * n / m, n - 1) }),
        ([2, 5, 6], [2, 7, 4], .asymmetric, .floor, { o, n, m in min(o * n / m, n - 1) }),
        // PyTorch 'nearest-exact': floor((o + 0.5) · n / m), clamped.
        ([2, 5, 6], [2, 7, 9], .halfPixel, .roundPreferCeil, { o, n, m in min((2 * o + 1) * n / (2 * m), n - 1) }),
        // half_pixel ×0.5 lands on ties (2o + 0.5): prefer floor → 2o, prefer ceil → 2o + 1.
        ([2, 6, 8], [2, 3, 4], .halfPixel, .roundPreferFloor, { o, n, m in m == n ? o : 2 * o }),
        ([2, 6, 8], [2, 3, 4], .halfPixel, .roundPreferCeil, { o, n, m in m == n ? o : 2 * o + 1 }),
        // align_corners: round(o · (n − 1) / (m − 1)), ties down.
        ([2, 4, 5], [2, 7, 9], .alignCorners, .roundPreferFloor, { o, n, m in
            let num = o * (n - 1), den = m - 1
            let q = num / den, r = num - q * den
            return 2 * r > den ? q + 1 : q }),
    ]

    func resizeGraph(_ i: Int, pre: Bool) throws -> Graph {
        let c = resizeCases[i]
        let scales = (0..<c.x.count).map { Double(c.out[$0]) / Double(c.x[$0]) }
        return try graph(c.x, seed: UInt64(10 * i + 7), pre: pre) { b, u in
            try b.apply(FlowRuntime.Operation(try ResizeOp(shape: c.out, scales: scales, transform: c.transform, rounding: c.rounding,
                                               inputShape: c.x, node: "op")), [u], name: "op")
        }
    }

    func testResizeDerivatives() throws {
        for i in [0, 2, 3] {
            try checkDerivatives(try resizeGraph(i, pre: true), "Resize \(resizeCases[i].transform) \(resizeCases[i].rounding)")
        }
    }

    func testResizeForwardMatchesReference() throws {
        for i in resizeCases.indices {
            let c = resizeCases[i]
            let batch = 2, d = c.x.elementCount
            let x = random([batch, d], seed: 27).scalars
            let out = try nodeOutputs(try resizeGraph(i, pre: false), x: x, batch: batch, names: ["op"])["op"]!
            XCTAssertEqual(out.shape, c.out)
            var expected: [Double] = []
            for s in 0..<batch {
                for o0 in 0..<c.out[0] { for o1 in 0..<c.out[1] { for o2 in 0..<c.out[2] {
                    let i0 = c.reference(o0, c.x[0], c.out[0]), i1 = c.reference(o1, c.x[1], c.out[1])
                    let i2 = c.reference(o2, c.x[2], c.out[2])
                    expected.append(Double(x[s * d + (i0 * c.x[1] + i1) * c.x[2] + i2]))
                } } }
            }
            assertClose(out.values, expected, tolerance: 0, "Resize \(c.transform) \(c.rounding) \(c.x) → \(c.out) forward")
        }
    }

    // MARK: Resize, linear

    /// (input, output, transform): bilinear ×2 and to odd sizes, a
    /// downsampling, align_corners, asymmetric (opset 10's and Upsample's),
    /// one axis (rank 3: [C, L]) and three (trilinear).
    let linearResizeCases: [(x: [Int], out: [Int], transform: ResizeOp.Transform)] = [
        ([2, 3, 4], [2, 6, 8], .halfPixel),
        ([2, 5, 6], [2, 7, 9], .pytorchHalfPixel),
        ([2, 6, 8], [2, 3, 5], .halfPixel),
        ([2, 4, 5], [2, 7, 9], .alignCorners),
        ([2, 3, 4], [2, 6, 8], .asymmetric),
        ([3, 5], [3, 11], .halfPixel),
        ([2, 3, 4, 3], [2, 6, 8, 5], .alignCorners),
    ]

    func linearResizeGraph(_ i: Int, pre: Bool) throws -> Graph {
        let c = linearResizeCases[i]
        let scales = (0..<c.x.count).map { Double(c.out[$0]) / Double(c.x[$0]) }
        return try graph(c.x, seed: UInt64(10 * i + 9), pre: pre) { b, u in
            try b.apply(FlowRuntime.Operation(try LinearResizeOp(shape: c.out, scales: scales, transform: c.transform,
                                                                 inputShape: c.x, node: "op")), [u], name: "op")
        }
    }

    /// JVP and VJP against central differences (the op is linear, so a
    /// dropped or misplaced tap shows in both).
    func testLinearResizeDerivatives() throws {
        for i in linearResizeCases.indices {
            let c = linearResizeCases[i]
            try checkDerivatives(try linearResizeGraph(i, pre: true), "Resize linear \(c.transform) \(c.x) → \(c.out)")
        }
    }

    /// Against PyTorch's formulas written out per axis in double: source
    /// coordinate (align_corners: o·(n−1)/(m−1); half-pixel: (o + ½)·n/m − ½,
    /// negative → 0 as PyTorch clamps; asymmetric: o·n/m), i₀ = ⌊c⌋,
    /// i₁ = min(i₀ + 1, n − 1), λ = c − i₀, and the 2^k corners.
    func testLinearResizeForwardMatchesReference() throws {
        for i in linearResizeCases.indices {
            let c = linearResizeCases[i]
            let batch = 2, d = c.x.elementCount, rank = c.x.count
            let x = random([batch, d], seed: 29).scalars
            let out = try nodeOutputs(try linearResizeGraph(i, pre: false), x: x, batch: batch, names: ["op"])["op"]!
            XCTAssertEqual(out.shape, c.out)
            func axis(_ o: Int, _ n: Int, _ m: Int) -> (Int, Int, Double) {
                guard n != m else { return (o, o, 0) }
                var src: Double
                switch c.transform {
                case .alignCorners: src = m > 1 ? Double(o) * Double(n - 1) / Double(m - 1) : 0
                case .asymmetric: src = Double(o) * Double(n) / Double(m)
                default: src = Swift.max(0, (Double(o) + 0.5) * Double(n) / Double(m) - 0.5)
                }
                let i0 = Swift.min(Int(src), n - 1)
                return (i0, Swift.min(i0 + 1, n - 1), src - Double(i0))
            }
            let strides = (0..<rank).map { c.x[($0 + 1)...].reduce(1, *) }
            var expected: [Double] = []
            for s in 0..<batch {
                for flat in 0..<c.out.elementCount {
                    var rest = flat, o = [Int](repeating: 0, count: rank)
                    for a in (0..<rank).reversed() { o[a] = rest % c.out[a]; rest /= c.out[a] }
                    let taps = (0..<rank).map { axis(o[$0], c.x[$0], c.out[$0]) }
                    var sum = 0.0
                    for corner in 0..<(1 << rank) {
                        var w = 1.0, at = 0
                        for a in 0..<rank {
                            let upper = corner >> a & 1 == 1
                            w *= upper ? taps[a].2 : 1 - taps[a].2
                            at += (upper ? taps[a].1 : taps[a].0) * strides[a]
                        }
                        sum += w * Double(x[s * d + at])
                    }
                    expected.append(sum)
                }
            }
            assertClose(out.values, expected, tolerance: 1e-6, "Resize linear \(c.transform) \(c.x) → \(c.out) forward")
        }
    }

    // MARK: Embedding

    /// x [2, 3, 4] → y = u ⊙ Linear(Embedding(label)) + u, labels in the context.
    func embeddingGraph() throws -> Graph {
        try graph([2, 3, 4], seed: 8, context: true) { b, u in
            let flat = try b.apply(.reshape(shape: [24]), [u])
            let table = b.parameter("embedding.table", self.random([5, 8], seed: 1300, scale: 0.7))
            let e = try b.apply(.embedding, [table, b.context!], name: "op")
            let le = try b.linear(e, weight: self.random([24, 8], seed: 1301, scale: 0.4),
                                  bias: self.random([24], seed: 1302, scale: 0.2), name: "le")
            return try b.add(try b.mul(flat, le), flat)
        }
    }

    func testEmbeddingDerivatives() throws {
        // Label 3 twice: its table row gradient sums both samples'.
        try checkDerivatives(try embeddingGraph(), context: [3, 0, 3], "Embedding labels [3, 0, 3]")
        try checkDerivatives(try embeddingGraph(), context: [2, 7, -1, 1.5], batch: 4, "Embedding with invalid labels")
    }

    func testEmbeddingRowsAndOutOfRangeLabels() throws {
        let g = try embeddingGraph()
        let table = random([5, 8], seed: 1300, scale: 0.7).scalars
        let labels: [Float] = [2, 7, -1, 4, 1.5, 5]
        let x = random([labels.count, 24], seed: 28).scalars
        let e = try nodeOutputs(g, x: x, batch: labels.count, context: labels, names: ["op"])["op"]!
        XCTAssertEqual(e.shape, [8])
        for (s, label) in labels.enumerated() {
            let row = Array(e.values[(s * 8)..<((s + 1) * 8)])
            if label == 2 || label == 4 {
                XCTAssertEqual(row, Array(table[(Int(label) * 8)..<(Int(label) * 8 + 8)]), "label \(label) picks its row")
            } else {
                XCTAssertEqual(row, [Float](repeating: 0, count: 8), "label \(label) outside the table gives a zero row")
            }
        }
        // The table gradient touches only rows of valid labels.
        let diff = try GraphDifferentiator(graph: g)
        let ws = GraphWorkspace()
        let t = (0..<labels.count).map { 0.1 * Double($0) }
        _ = run(diff.executor, t, x, labels, ws: ws, record: true)
        let w = random([labels.count, 24], seed: 29).scalars
        w.withUnsafeBufferPointer { diff.backward(outputGradient: $0.baseAddress!, workspace: ws) }
        let p = g.parameters.firstIndex { $0.name == "embedding.table" }!
        let grad = diff.withGradient(p, workspace: ws) { Array($0) }
        for r in 0..<5 {
            let norm = grad[(r * 8)..<(r * 8 + 8)].map { abs($0) }.max()!
            if r == 2 || r == 4 { XCTAssertGreaterThan(norm, 0, "row \(r) has a gradient") }
            else { XCTAssertEqual(norm, 0, "row \(r) is used by no valid label") }
        }
    }

    // MARK: Divergence of a tiny conv net

    /// x [c, 4, 4] → Conv 3×3 (m channels) → GroupNorm(2)+SiLU → Conv 1×1 → c channels,
    /// for c = 1, m = 4 and for c = m = 16 (the 3×3 conv on Winograd's path).
    /// Exact divergence (one k = 16c JVP) equals the trace of the central
    /// finite-difference Jacobian, and the whole JVP Jacobian matches it.
    /// Tolerance: each FD entry carries ≈ 6e-8·|v|/h ≈ 1e-5 rounding and
    /// h²/6·|v'''| ≈ 4e-6 truncation at h = 5e-3; summed over 16 diagonal
    /// entries ≲ 1e-4 (measured 4e-5 on a trace of 8.3), so
    /// |div − tr| ≤ 2e-4 · max(1, Σ|J_jj|) (≈ 1.7e-3 for c = 1); Jacobian
    /// entries within 2e-3 of the largest.
    func testDivergenceOfTinyConvNetIsTraceOfJacobian() throws {
        try checkDivergenceIsTraceOfJacobian(channels: 1, width: 4)
        try checkDivergenceIsTraceOfJacobian(channels: 16, width: 16)
    }

    func checkDivergenceIsTraceOfJacobian(channels c: Int, width m: Int) throws {
        var b = GraphBuilder(sampleShape: [c, 4, 4])
        let w1 = b.parameter("c1.weight", random([m, c, 3, 3], seed: 1400, scale: 0.6 / Double(c).squareRoot()))
        let b1 = b.parameter("c1.bias", random([m], seed: 1401, scale: 0.2))
        let c1 = try b.apply(.conv(kernel: [3, 3], strides: [1, 1], padsBegin: [1, 1], padsEnd: [1, 1], dilations: [1, 1], groups: 1),
                             [b.x, w1, b1])
        let gamma = b.parameter("gn.gamma", random([m], seed: 1402, scale: 0.3, offset: 1))
        let beta = b.parameter("gn.beta", random([m], seed: 1403, scale: 0.3))
        let gn = try b.apply(.groupNorm(groups: 2, epsilon: 1e-5, silu: true), [c1, gamma, beta])
        let w2 = b.parameter("c2.weight", random([c, m, 1, 1], seed: 1404, scale: 1.6 / Double(m).squareRoot()))
        let b2 = b.parameter("c2.bias", random([c], seed: 1405, scale: 0.1))
        let c2 = try b.apply(.conv(kernel: [1, 1], strides: [1, 1], padsBegin: [0, 0], padsEnd: [0, 0], dilations: [1, 1], groups: 1),
                             [gn, w2, b2])
        let model = try Model(graph: try b.finish(output: c2))
        if c >= 16 && PackedWeights.available {
            XCTAssertNotNil(model.plan.parameters.derived[0], "the 16-channel 3×3 conv should take the Winograd path")
        }
        let d = 16 * c, batch = 2
        let x = random([batch, d], seed: 1406).scalars
        let t = [0.25, 0.75]
        let div = model.divergence(t: t, x: Tensor(shape: [batch, d], scalars: x))

        // JVP Jacobian: tangents = the identity for each sample.
        var basis = [Float](repeating: 0, count: batch * d * d)
        for s in 0..<batch { for j in 0..<d { basis[(s * d + j) * d + j] = 1 } }
        var v = [Float](repeating: 0, count: batch * d), jv = [Float](repeating: 0, count: batch * d * d)
        t.withUnsafeBufferPointer { tb in x.withUnsafeBufferPointer { xb in basis.withUnsafeBufferPointer { ub in
            v.withUnsafeMutableBufferPointer { vb in jv.withUnsafeMutableBufferPointer { jb in
                model.velocityJVP(times: tb, points: xb, tangents: ub, k: d, into: vb, products: jb, workspace: model.makeWorkspace())
            } }
        } } }

        for s in 0..<batch {
            var fdJ = [[Double]](repeating: [Double](repeating: 0, count: d), count: d)  // fdJ[j][i] = ∂v_i/∂x_j
            for j in 0..<d {
                var xp = x, xm = x
                xp[s * d + j] += hDivergence; xm[s * d + j] -= hDivergence
                let fp = model.velocity(t: t, x: Tensor(shape: [batch, d], scalars: xp)).scalars
                let fm = model.velocity(t: t, x: Tensor(shape: [batch, d], scalars: xm)).scalars
                for i in 0..<d { fdJ[j][i] = (Double(fp[s * d + i]) - Double(fm[s * d + i])) / (2 * Double(hDivergence)) }
            }
            let trace = (0..<d).reduce(0.0) { $0 + fdJ[$1][$1] }
            let absTrace = (0..<d).reduce(0.0) { $0 + abs(fdJ[$1][$1]) }
            if verbose { print("tiny conv net sample \(s): divergence \(div[s]), FD trace \(trace), Σ|J_jj| \(absTrace)") }
            XCTAssertEqual(div[s], trace, accuracy: 2e-4 * max(1, absTrace),
                           "sample \(s), \(c) channels: exact divergence vs trace of the finite-difference Jacobian")
            var worst = 0.0, scale = 1e-6
            for j in 0..<d { for i in 0..<d {
                worst = max(worst, abs(fdJ[j][i] - Double(jv[(s * d + j) * d + i]))); scale = max(scale, abs(fdJ[j][i]))
            } }
            XCTAssertLessThan(worst / scale, tolerance, "sample \(s): JVP Jacobian vs finite differences")
            XCTAssertGreaterThan(absTrace, 0.1, "the test net has a non-trivial Jacobian diagonal")
        }
    }
}
