import XCTest
@testable import FlowRuntime

/// The native U-Net builder: parameter counts against torchcfm's (the
/// fixtures' README) and a closed formula, shapes, finiteness, JVP/VJP
/// against finite differences, ONNX round trips and label conditioning.
final class VelocityUNetTests: XCTestCase {
    /// torchcfm's MNIST setting with attention at 14×14 (the brief's config).
    let mnist = VelocityUNet(channels: 1, height: 28, width: 28, modelChannels: 32, channelMultipliers: [1, 2, 2],
                             resBlocksPerLevel: 1, attentionResolutions: [14], heads: 1, seed: 3)
    /// torchcfm's tiny fixture layout: 1×8×8, 8 channels, mult (1, 1), attention at 4×4, 4 groups.
    let tiny = VelocityUNet(channels: 1, height: 8, width: 8, modelChannels: 8, channelMultipliers: [1, 1],
                            resBlocksPerLevel: 1, attentionResolutions: [4], heads: 2, groups: 4, seed: 5)

    func trainableCount(_ g: Graph) -> Int { g.parameters.filter(\.isTrainable).reduce(0) { $0 + $1.tensor.count } }

    /// Parameter count of the guided-diffusion layout, derived by hand:
    /// conv(i, o, k) = o·i·k² + o, linear(i, o) = i·o + o, GN(c) = 2c,
    /// res(i, o) = GN(i) + conv(i, o, 3) + linear(E, o) + GN(o) + conv(o, o, 3) + [i ≠ o]·conv(i, o, 1),
    /// attn(c) = GN(c) + conv(c, 3c, 1) + conv(c, c, 1), E = 4·mc.
    func formulaCount(_ u: VelocityUNet) -> Int {
        let mc = u.modelChannels, e = 4 * mc
        func conv(_ i: Int, _ o: Int, _ k: Int) -> Int { o * i * k * k + o }
        func linear(_ i: Int, _ o: Int) -> Int { i * o + o }
        func gn(_ c: Int) -> Int { 2 * c }
        func res(_ i: Int, _ o: Int) -> Int {
            gn(i) + conv(i, o, 3) + linear(e, o) + gn(o) + conv(o, o, 3) + (i != o ? conv(i, o, 1) : 0)
        }
        func attn(_ c: Int) -> Int { gn(c) + conv(c, 3 * c, 1) + conv(c, c, 1) }
        var total = linear(mc, e) + linear(e, e) + u.numClasses * e
        var ch = mc * u.channelMultipliers[0]
        total += conv(u.channels, ch, 3)
        var skips = [ch]
        let levels = u.channelMultipliers.count
        for (level, m) in u.channelMultipliers.enumerated() {
            for _ in 0..<u.resBlocksPerLevel {
                total += res(ch, mc * m); ch = mc * m
                if u.attentionResolutions.contains(u.height >> level) { total += attn(ch) }
                skips.append(ch)
            }
            if level < levels - 1 { total += conv(ch, ch, 3); skips.append(ch) }
        }
        total += 2 * res(ch, ch) + attn(ch)
        for (level, m) in u.channelMultipliers.enumerated().reversed() {
            for i in 0...u.resBlocksPerLevel {
                total += res(ch + skips.removeLast(), mc * m); ch = mc * m
                if u.attentionResolutions.contains(u.height >> level) { total += attn(ch) }
                if level > 0 && i == u.resBlocksPerLevel { total += conv(ch, ch, 3) }
            }
        }
        return total + gn(ch) + conv(ch, u.channels, 3)
    }

    func batch(_ shape: [Int], _ n: Int, seed: UInt64) -> (t: [Double], x: Tensor) {
        var rng = RandomStream(seed: seed, purpose: .custom, index: 0)
        let t = (0..<n).map { _ in rng.nextUniform() }
        let d = shape.elementCount
        return (t, Tensor(shape: [n] + shape, scalars: (0..<(n * d)).map { _ in Float(rng.nextNormal()) }))
    }

    /// Independent reference: torchcfm's parameter counts for the layouts of
    /// Tests/ONNXData/images (README table: 1,075,361 / 1,076,641 / 18,521 / 18,841).
    func testParameterCountsMatchTorchcfm() throws {
        var full = mnist
        full.attentionResolutions = [28]  // torchcfm's "16" for 28 px: ds 1, i.e. attention at 28×28
        full.heads = 1
        XCTAssertEqual(trainableCount(try full.makeGraph()), 1_075_361)
        full.numClasses = 10
        XCTAssertEqual(trainableCount(try full.makeGraph()), 1_076_641)
        var small = tiny
        small.heads = 1
        XCTAssertEqual(trainableCount(try small.makeGraph()), 18_521)
        small.numClasses = 10
        XCTAssertEqual(trainableCount(try small.makeGraph()), 18_841)
    }

    func testMNISTConfigurationShapesCountAndFiniteVelocity() throws {
        let model = try mnist.makeModel()
        XCTAssertEqual(model.graph.sampleShape, [1, 28, 28])
        XCTAssertEqual(model.dimension, 784)
        XCTAssertNil(model.graph.context)
        XCTAssertEqual(model.parameterCount, formulaCount(mnist))
        XCTAssertEqual(model.parameterCount, 1_112_801)
        XCTAssertEqual(model.metadata["flowrt.architecture"], "unet")
        // Level heights 28 → 14 → 7 and back: a conv of stride 2 at 28 and 14, two upsamples.
        let downs = model.graph.nodes.filter { ($0.operation.as(ConvOp.self)?.strides ?? [1, 1]) == [2, 2] }
        XCTAssertEqual(downs.map { model.graph.values[$0.output].shape }, [[32, 14, 14], [64, 7, 7]])
        let ups = model.graph.nodes.filter { $0.operation.kindName == "Resize" }
        XCTAssertEqual(ups.map { model.graph.values[$0.output].shape }, [[64, 14, 14], [64, 28, 28]])
        let softmaxes = model.graph.nodes.filter { $0.operation.kindName == "Softmax" }
        XCTAssertEqual(softmaxes.map { model.graph.values[$0.output].shape }, [[1, 196, 196], [1, 49, 49], [1, 196, 196], [1, 196, 196]])
        let (t, x) = batch([1, 28, 28], 2, seed: 1)
        let v = model.velocity(t: t, x: x, context: nil)
        XCTAssertEqual(v.shape, [2, 1, 28, 28])
        XCTAssertTrue(v.scalars.allSatisfy(\.isFinite))
        // PyTorch default init (no zero output conv): the untrained velocity is not 0.
        XCTAssertGreaterThan(v.scalars.map(abs).max()!, 1e-3)
        XCTAssertEqual(trainableCount(try mnist.makeGraph()), formulaCount(mnist))
    }

    func testTinyConfigurationsAgreeWithTheFormula() throws {
        for config in [tiny, VelocityUNet(channels: 3, height: 16, width: 8, modelChannels: 16, channelMultipliers: [1, 2, 3],
                                          resBlocksPerLevel: 2, attentionResolutions: [16, 4], heads: 4, groups: 8,
                                          numClasses: 5, seed: 1)] {
            let g = try config.makeGraph()
            XCTAssertEqual(trainableCount(g), formulaCount(config), "\(config)")
            XCTAssertEqual(g.sampleShape, config.sampleShape)
        }
    }

    func testSeedDeterminesTheWeights() throws {
        let a = try tiny.makeGraph(), b = try tiny.makeGraph()
        XCTAssertEqual(a.parameters.map(\.tensor), b.parameters.map(\.tensor))
        var other = tiny
        other.seed += 1
        XCTAssertNotEqual(a.parameters.map(\.tensor), try other.makeGraph().parameters.map(\.tensor))
        // PyTorch's bound 1/√fan_in: the input conv has fan_in 1·3·3 = 9.
        let w = a.parameters.first { $0.name == "input_blocks.0.0.weight" }!.tensor
        XCTAssertEqual(w.shape, [8, 1, 3, 3])
        XCTAssertLessThanOrEqual(w.scalars.map(abs).max()!, 1 / 3)
        XCTAssertGreaterThan(w.scalars.map(abs).max()!, 0.25)
    }

    func testInvalidConfigurationsThrow() {
        let bad: [VelocityUNet] = [
            VelocityUNet(channels: 1, height: 28, width: 28, channelMultipliers: [1, 2, 2, 2]),  // 28 not divisible by 8
            VelocityUNet(channels: 1, height: 28, width: 28, attentionResolutions: [10]),  // not a level
            VelocityUNet(channels: 1, height: 28, width: 28, heads: 5),  // 5 ∤ 64 (middle)
            VelocityUNet(channels: 1, height: 28, width: 28, modelChannels: 7),
            VelocityUNet(channels: 0, height: 28, width: 28),
        ]
        for config in bad {
            XCTAssertThrowsError(try config.makeGraph(), "\(config)") { error in
                guard case FlowError.invalidArgument = error else { return XCTFail("\(error)") }
            }
        }
    }

    /// JVP (k = 2 tangents), exact divergence and the parameter VJP against
    /// central differences (h = 2e-3, Float evaluations in Double). Same
    /// tolerance reasoning as GraphDerivativeTests, with 5e-3 of the largest
    /// derivative: the U-Net is ~30 layers deep, so float32 rounding of the
    /// difference quotient is a few times larger than for a small graph.
    func testTinyDerivativesMatchFiniteDifferences() throws {
        let tolerance = 5e-3
        let g = try tiny.makeGraph()
        let model = try Model(graph: g)
        let d = model.dimension, n = 2, k = 2
        let (t, xt) = batch([1, 8, 8], n, seed: 21)
        let x = xt.scalars
        let u = batch([k, 1, 8, 8], n, seed: 22).x.scalars
        let h: Float = 2e-3
        func forward(_ m: Model, _ x: [Float]) -> [Float] { m.velocity(t: t, x: Tensor(shape: [n, d], scalars: x)).scalars }
        var v = [Float](repeating: 0, count: n * d), jv = [Float](repeating: 0, count: n * k * d)
        t.withUnsafeBufferPointer { tb in x.withUnsafeBufferPointer { xb in u.withUnsafeBufferPointer { ub in
            v.withUnsafeMutableBufferPointer { vb in jv.withUnsafeMutableBufferPointer { jb in
                model.velocityJVP(times: tb, points: xb, tangents: ub, k: k, into: vb, products: jb, workspace: model.makeWorkspace())
            } }
        } } }
        XCTAssertEqual(v, forward(model, x))
        var worst = 0.0, scale = 1e-6
        for i in 0..<n {
            for j in 0..<k {
                var xp = x, xm = x
                for c in 0..<d { xp[i * d + c] += h * u[(i * k + j) * d + c]; xm[i * d + c] -= h * u[(i * k + j) * d + c] }
                let fp = forward(model, xp), fm = forward(model, xm)
                for c in 0..<d {
                    let fd = (Double(fp[i * d + c]) - Double(fm[i * d + c])) / (2 * Double(h))
                    worst = max(worst, abs(fd - Double(jv[(i * k + j) * d + c]))); scale = max(scale, abs(fd))
                }
            }
        }
        XCTAssertLessThan(worst / scale, tolerance, "JVP vs finite differences")

        // Exact divergence vs the trace of the finite-difference Jacobian (sample 0).
        let div = model.divergence(t: t, x: Tensor(shape: [n, d], scalars: x))
        var trace = 0.0
        for c in 0..<d {
            var xp = x, xm = x
            xp[c] += h; xm[c] -= h
            trace += (Double(forward(model, xp)[c]) - Double(forward(model, xm)[c])) / (2 * Double(h))
        }
        XCTAssertEqual(div[0], trace, accuracy: tolerance * max(1, abs(trace)) * 4, "divergence")

        // VJP: gradient of L = Σ ⟨w, v⟩ for 4 elements of every trainable tensor.
        let w = batch([1, 8, 8], n, seed: 23).x.scalars
        let diff = try GraphDifferentiator(graph: g)
        let gws = GraphWorkspace()
        t.withUnsafeBufferPointer { tb in x.withUnsafeBufferPointer { xb in
            _ = diff.forward(times: tb, points: xb.baseAddress!, workspace: gws)
        } }
        w.withUnsafeBufferPointer { diff.backward(outputGradient: $0.baseAddress!, workspace: gws) }
        func loss(_ graph: Graph) throws -> Double {
            zip(forward(try Model(graph: graph), x), w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        var gworst = 0.0, gscale = 1e-6
        for p in diff.trainableIndices {
            let count = g.parameters[p].tensor.count
            let analytic = diff.withGradient(p, workspace: gws) { Array($0) }
            for e in stride(from: 0, to: count, by: max(1, count / 4)) {
                var gp = g, gm = g
                gp.parameters[p].tensor.scalars[e] += h
                gm.parameters[p].tensor.scalars[e] -= h
                let fd = (try loss(gp) - loss(gm)) / (2 * Double(h))
                gworst = max(gworst, abs(fd - Double(analytic[e]))); gscale = max(gscale, abs(fd))
            }
        }
        XCTAssertLessThan(gworst / gscale, tolerance, "VJP vs finite differences")
    }

    func roundTrip(_ model: Model) throws -> Model {
        let bytes = try model.onnxData()
        return try bytes.withUnsafeBytes { try Model.loadONNX(bytes: $0) }
    }

    func testONNXRoundTripGivesTheSameVelocity() throws {
        for config in [tiny, mnist] {
            let model = try config.makeModel()
            let back = try roundTrip(model)
            XCTAssertEqual(back.graph.sampleShape, config.sampleShape)
            // The same trainable parameters: GroupNorm's γ, β stay weights through
            // the opset-17 expansion, and constants (time frequencies) stay constants.
            XCTAssertEqual(back.parameterCount, model.parameterCount)
            let (t, x) = batch(config.sampleShape, 3, seed: 31)
            let err = model.velocity(t: t, x: x, context: nil).maxAbsDifference(back.velocity(t: t, x: x, context: nil))
            XCTAssertLessThanOrEqual(err, 1e-5, "\(config.height)×\(config.width)")
        }
    }

    func testClassLabelsChangeTheVelocity() throws {
        var config = tiny
        config.numClasses = 10
        let model = try config.makeModel()
        XCTAssertNotNil(model.graph.context)
        XCTAssertEqual(model.graph.contextDimension, 1)
        let (t0, x0) = batch([1, 8, 8], 1, seed: 41)
        // The same (t, x) three times, with labels 0, 3 and 3.
        let t = [t0[0], t0[0], t0[0]]
        let x = Tensor(shape: [3, 1, 8, 8], scalars: x0.scalars + x0.scalars + x0.scalars)
        let v = model.velocity(t: t, x: x, context: Tensor(shape: [3], scalars: [0, 3, 3]))
        let d = 64
        let v0 = Array(v.scalars[0..<d]), v3 = Array(v.scalars[d..<(2 * d)]), v3b = Array(v.scalars[(2 * d)...])
        XCTAssertEqual(v3, v3b)
        XCTAssertGreaterThan(zip(v0, v3).map { abs($0 - $1) }.max()!, 1e-3)
        // The label survives export: context input, Cast + Gather.
        let back = try roundTrip(model)
        XCTAssertNotNil(back.graph.context)
        let labels = Tensor(shape: [3], scalars: [0, 3, 9])
        let err = model.velocity(t: t, x: x, context: labels).maxAbsDifference(back.velocity(t: t, x: x, context: labels))
        XCTAssertLessThanOrEqual(err, 1e-5)
    }
    // MARK: torchcfm's weights in the native layout

    /// The `net.*` initializers of a torchcfm fixture (dynamo export, which
    /// keeps PyTorch's parameter names), keyed without the prefix.
    func torchcfmWeights(_ file: String) throws -> [String: Tensor] {
        let bytes = try FileIO.read(ImageNetworkTests.folder + "/" + file)
        let proto = try bytes.withUnsafeBytes { try ONNXProtoModel.parse($0) }
        var weights: [String: Tensor] = [:]
        for t in proto.graph.initializers where t.name.hasPrefix("net.") {
            if case .float(let tensor) = try ONNXTensorDecoding.decode(t, directory: nil) {
                weights[String(t.name.dropFirst(4))] = tensor
            }
        }
        return weights
    }

    /// `graph` with every trainable parameter replaced by torchcfm's tensor of
    /// the same name; attention's q, k, v convs take their rows of `qkv`
    /// (legacy order: per head h, rows [q_h; k_h; v_h]). Fails unless every
    /// parameter is found and every torchcfm weight is used.
    func loading(_ weights: [String: Tensor], into graph: Graph, heads: Int) throws -> Graph {
        var g = graph
        var used = Set<String>()
        for i in g.parameters.indices where g.parameters[i].isTrainable {
            let name = g.parameters[i].name, shape = g.parameters[i].tensor.shape
            if let r = name.range(of: ".qkv.") {
                let rest = name[r.upperBound...]  // "q.weight"
                let part = ["q", "k", "v"].firstIndex(of: String(rest.prefix(1)))!
                let key = "\(name[..<r.lowerBound]).qkv.\(rest.dropFirst(2))"
                let full = try XCTUnwrap(weights[key], key)
                used.insert(key)
                let c = shape[0], d = c / heads, columns = full.count / (3 * c)
                var rows: [Float] = []
                for h in 0..<heads {
                    let row0 = h * 3 * d + part * d
                    rows += full.scalars[(row0 * columns)..<((row0 + d) * columns)]
                }
                g.parameters[i].tensor = Tensor(shape: shape, scalars: rows)
            } else {
                let t = try XCTUnwrap(weights[name], "torchcfm has no '\(name)'")
                XCTAssertEqual(t.count, shape.elementCount, name)
                used.insert(name)
                g.parameters[i].tensor = t.reshaped(shape)
            }
        }
        XCTAssertEqual(used, Set(weights.keys), "torchcfm weights left unused: \(Set(weights.keys).subtracting(used).sorted())")
        return g
    }

    /// Independent reference: torchcfm's own U-Net (Tests/ONNXData/images,
    /// PyTorch outputs). The native graph carrying torchcfm's weights must
    /// give PyTorch's velocities within 1e-4 of their scale (the tolerance
    /// of ImageNetworkTests), unconditional and with labels.
    func testNativeLayoutWithTorchcfmWeightsMatchesPyTorch() throws {
        var config = mnist
        config.attentionResolutions = [28]  // torchcfm's "16" at 28 px
        config.heads = 1
        for (file, classes) in [("tcfm_unet__dynamo__op21.onnx", 0), ("tcfm_unet_cond__dynamo__op21.onnx", 10)] {
            config.numClasses = classes
            let graph = try loading(try torchcfmWeights(file), into: try config.makeGraph(), heads: config.heads)
            let model = try Model(graph: graph)
            for c in try ImageNetworkTests.cases(file) {
                let v = model.velocity(t: c.t, x: Tensor(shape: c.xShape, scalars: c.x),
                                       context: c.context.map { Tensor(shape: [$0.count], scalars: $0) })
                let scale = c.output.map { abs($0) }.max()!
                let err = zip(v.scalars, c.output).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(err, 1e-4 * scale, "\(file) batch \(c.batch): max |v − PyTorch| = \(err), scale \(scale)")
            }
        }
    }
    /// One attention block with 2 heads against a direct Double evaluation of
    /// guided-diffusion's QKVAttentionLegacy: n = GN(x); per head h,
    /// q, k, v = rows h·3d + [0, d), [d, 2d), [2d, 3d) of W_qkv n + b;
    /// P = softmax_s(qᵀk/√d); a = v Pᵀ; y = x + W_proj a + b_proj.
    func testMultiHeadAttentionMatchesTheLegacyFormula() throws {
        let c = 8, heads = 2, d = c / heads, side = 3, length = side * side
        let config = VelocityUNet(channels: c, height: side, width: side, modelChannels: 8, channelMultipliers: [1],
                                  attentionResolutions: [side], heads: heads, groups: 4, seed: 9)
        var unet = _UNetBuilder(config: config)
        let y = try unet.attention(unet.b.x, name: "attn")
        let graph = try unet.b.finish(output: y)
        let model = try Model(graph: graph)
        func param(_ name: String) -> [Double] {
            graph.parameters.first { $0.name == name }!.tensor.scalars.map(Double.init)
        }
        // Reassemble the legacy [3c, c] qkv weight from the three convs.
        var wqkv = [Double](repeating: 0, count: 3 * c * c), bqkv = [Double](repeating: 0, count: 3 * c)
        for (part, label) in ["q", "k", "v"].enumerated() {
            let w = param("attn.qkv.\(label).weight"), b = param("attn.qkv.\(label).bias")
            for h in 0..<heads {
                for j in 0..<d {
                    let row = h * 3 * d + part * d + j, src = h * d + j
                    for i in 0..<c { wqkv[row * c + i] = w[src * c + i] }
                    bqkv[row] = b[src]
                }
            }
        }
        let wproj = param("attn.proj_out.weight"), bproj = param("attn.proj_out.bias")
        let (t, xt) = batch([c, side, side], 2, seed: 51)
        let v = model.velocity(t: t, x: xt, context: nil).scalars
        for s in 0..<2 {
            let x = xt.scalars[(s * c * length)..<((s + 1) * c * length)].map(Double.init)
            // GroupNorm, 4 groups of 2 channels, ε = 1e-5.
            var n = x
            for g in 0..<4 {
                let part = x[(g * 2 * length)..<((g + 1) * 2 * length)]
                let mean = part.reduce(0, +) / Double(part.count)
                let variance = part.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(part.count)
                for i in (g * 2 * length)..<((g + 1) * 2 * length) { n[i] = (x[i] - mean) / (variance + 1e-5).squareRoot() }
            }
            var qkv = [Double](repeating: 0, count: 3 * c * length)
            for r in 0..<(3 * c) {
                for p in 0..<length {
                    var acc = bqkv[r]
                    for i in 0..<c { acc += wqkv[r * c + i] * n[i * length + p] }
                    qkv[r * length + p] = acc
                }
            }
            var a = [Double](repeating: 0, count: c * length)
            for h in 0..<heads {
                let q = h * 3 * d, k = q + d, vv = q + 2 * d
                for tt in 0..<length {
                    var scores = (0..<length).map { ss in
                        (0..<d).reduce(0.0) { $0 + qkv[(q + $1) * length + tt] * qkv[(k + $1) * length + ss] } / Double(d).squareRoot()
                    }
                    let m = scores.max()!
                    scores = scores.map { exp($0 - m) }
                    let z = scores.reduce(0, +)
                    for j in 0..<d {
                        a[(h * d + j) * length + tt] = (0..<length).reduce(0.0) { $0 + scores[$1] / z * qkv[(vv + j) * length + $1] }
                    }
                }
            }
            for o in 0..<c {
                for p in 0..<length {
                    var out = x[o * length + p] + bproj[o]
                    for i in 0..<c { out += wproj[o * c + i] * a[i * length + p] }
                    XCTAssertEqual(Double(v[s * c * length + o * length + p]), out, accuracy: 1e-5, "sample \(s) channel \(o) position \(p)")
                }
            }
        }
    }
}
