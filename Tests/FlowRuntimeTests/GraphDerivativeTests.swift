import XCTest
@testable import FlowRuntime

/// Every operation's JVP and VJP against central finite differences of the
/// forward pass, computed in Double from Float evaluations.
///
/// Tolerance: with step h = 2e-3 on O(1) inputs, float32 rounding contributes
/// about 1e-7 / h ≈ 5e-5 and truncation about h² ≈ 4e-6 relative, so
/// derivatives must agree within 2e-3 of the largest |derivative| — about 40×
/// margin, yet a wrong rule (a missing term, a transposed weight) is off by O(1).
final class GraphDerivativeTests: XCTestCase {
    let tolerance = 2e-3

    /// A random tensor from a seeded stream.
    func random(_ shape: [Int], seed: UInt64, scale: Double = 1) -> Tensor {
        var r = RandomStream(seed: seed, purpose: .custom, index: 0)
        return Tensor(shape: shape, scalars: (0..<shape.elementCount).map { _ in Float(r.nextNormal() * scale) })
    }

    /// Builds input → [concat x,t] → linear(width, tanh) → body → linear(d).
    func graph(dim: Int = 3, width: Int = 6, seed: UInt64 = 1,
               _ body: (inout GraphBuilder, ValueID) throws -> ValueID) throws -> Graph {
        var b = GraphBuilder(dimension: dim)
        let xt = try b.concat([b.x, b.t])
        let h = try b.linear(xt, weight: random([width, dim + 1], seed: seed, scale: 0.7),
                             bias: random([width], seed: seed + 1, scale: 0.3), activation: .tanh, name: "in")
        let z = try body(&b, h)
        let zw = b.shape(of: z).last!
        let out = try b.linear(z, weight: random([dim, zw], seed: seed + 2, scale: 0.5),
                               bias: random([dim], seed: seed + 3, scale: 0.1), name: "out")
        return try b.finish(output: out)
    }

    func forward(_ model: Model, _ t: [Double], _ x: [Float]) -> [Float] {
        model.velocity(t: t, x: Tensor(shape: [t.count, model.dimension], scalars: x)).scalars
    }

    /// Checks JVP (k = 2 random tangents), exact divergence and parameter VJP.
    func checkDerivatives(_ g: Graph, batch: Int = 3, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try Model(graph: g)
        let d = model.dimension
        let x = random([batch, d], seed: 11).scalars
        let t = (0..<batch).map { 0.15 + 0.3 * Double($0) }
        let h: Float = 2e-3

        // JVP with k = 2 tangents per sample.
        let k = 2
        let u = random([batch, k, d], seed: 12).scalars
        var v = [Float](repeating: 0, count: batch * d)
        var jv = [Float](repeating: 0, count: batch * k * d)
        let ws = model.makeWorkspace()
        t.withUnsafeBufferPointer { tb in x.withUnsafeBufferPointer { xb in u.withUnsafeBufferPointer { ub in
            v.withUnsafeMutableBufferPointer { vb in jv.withUnsafeMutableBufferPointer { jb in
                model.velocityJVP(times: tb, points: xb, tangents: ub, k: k, into: vb, products: jb, workspace: ws)
            } }
        } } }
        XCTAssertEqual(v, forward(model, t, x), "velocity from the JVP pass differs from forward", file: file, line: line)
        var worst = 0.0, scale = 1e-6
        for i in 0..<batch {
            for j in 0..<k {
                var xp = x, xm = x
                for c in 0..<d { xp[i * d + c] += h * u[(i * k + j) * d + c]; xm[i * d + c] -= h * u[(i * k + j) * d + c] }
                let fp = forward(model, t, xp), fm = forward(model, t, xm)
                for c in 0..<d {
                    let fd = (Double(fp[i * d + c]) - Double(fm[i * d + c])) / (2 * Double(h))
                    let an = Double(jv[(i * k + j) * d + c])
                    worst = max(worst, abs(fd - an)); scale = max(scale, abs(fd))
                }
            }
        }
        XCTAssertLessThan(worst / scale, tolerance, "JVP vs finite differences", file: file, line: line)

        // Exact divergence vs the trace of the finite-difference Jacobian.
        let div = model.divergence(t: t, x: Tensor(shape: [batch, d], scalars: x))
        for i in 0..<batch {
            var tr = 0.0
            for c in 0..<d {
                var xp = x, xm = x
                xp[i * d + c] += h; xm[i * d + c] -= h
                tr += (Double(forward(model, t, xp)[i * d + c]) - Double(forward(model, t, xm)[i * d + c])) / (2 * Double(h))
            }
            XCTAssertEqual(div[i], tr, accuracy: tolerance * max(1, abs(tr)) * 2, "divergence sample \(i)", file: file, line: line)
        }

        // VJP: gradient of L = Σ ⟨w, v⟩ for every trainable parameter element
        // (up to 12 per tensor) against finite differences of L.
        let w = random([batch, d], seed: 13).scalars
        let diff = try GraphDifferentiator(graph: g)
        let gws = GraphWorkspace()
        t.withUnsafeBufferPointer { tb in x.withUnsafeBufferPointer { xb in
            _ = diff.forward(times: tb, points: xb.baseAddress!, workspace: gws)
        } }
        w.withUnsafeBufferPointer { diff.backward(outputGradient: $0.baseAddress!, workspace: gws) }
        func loss(_ graph: Graph) throws -> Double {
            let f = forward(try Model(graph: graph), t, x)
            return zip(f, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        var gworst = 0.0, gscale = 1e-6
        for p in diff.trainableIndices {
            let n = g.parameters[p].tensor.count
            let analytic = diff.withGradient(p, workspace: gws) { Array($0) }
            for e in stride(from: 0, to: n, by: max(1, n / 12)) {
                var gp = g, gm = g
                gp.parameters[p].tensor.scalars[e] += h
                gm.parameters[p].tensor.scalars[e] -= h
                let fd = (try loss(gp) - loss(gm)) / (2 * Double(h))
                gworst = max(gworst, abs(fd - Double(analytic[e]))); gscale = max(gscale, abs(fd))
            }
        }
        XCTAssertLessThan(gworst / gscale, tolerance, "VJP vs finite differences", file: file, line: line)
    }

    func testLinearWithEveryActivation() throws {
        let fs: [UnaryFunction] = [.identity, .silu, .sigmoid, .tanh, .relu, .leakyRelu(slope: 0.1), .elu(alpha: 0.7),
                                   .selu, .softplus(beta: 2, threshold: 20), .gelu, .geluTanh,
                                   .hardSigmoid(alpha: 0.3, beta: 0.4), .hardSwish, .clip(lower: -0.4, upper: 0.5), .mish]
        for f in fs {
            let g = try graph { b, h in
                try b.linear(h, weight: self.random([5, 6], seed: 7, scale: 0.6), bias: self.random([5], seed: 8),
                             activation: f, name: "mid")
            }
            try checkDerivatives(g)
        }
    }

    /// HardSigmoid, HardSwish, Clip and Mish against their definitions in
    /// double (PyTorch's: hardswish x·relu6(x + 3)/6, mish x·tanh(softplus)
    /// with softplus's threshold 20), NaN kept, on a grid through the kinks.
    func testClampedActivationsAgainstDefinitions() {
        func hs(_ x: Double, _ a: Double, _ b: Double) -> Double { Swift.max(0, Swift.min(1, a * x + b)) }
        // (function, reference, tolerance relative to max(1, |f|): a few
        // float roundings; Mish composes exp, log1p and tanh)
        let cases: [(UnaryFunction, (Double) -> Double, Double)] = [
            (.hardSigmoid(alpha: 0.2, beta: 0.5), { hs($0, 0.2, 0.5) }, 2e-7),
            (.hardSwish, { $0 * Swift.max(0, Swift.min(6, $0 + 3)) / 6 }, 4e-7),
            (.clip(lower: 0, upper: 6), { Swift.max(0, Swift.min(6, $0)) }, 0),
            (.mish, { $0 * Foundation.tanh($0 > 20 ? $0 : Foundation.log1p(Foundation.exp($0))) }, 1e-6),
        ]
        for (f, reference, tolerance) in cases {
            var worst = 0.0
            for i in -1200...1200 {
                let x = Float(i) / 100
                let r = reference(Double(x))
                worst = Swift.max(worst, abs(Double(f(x)) - r) / Swift.max(1, abs(r)))
            }
            XCTAssertLessThanOrEqual(worst, tolerance, "\(f)")
            XCTAssertTrue(f(.nan).isNaN, "\(f) of NaN")
        }
    }

    func testUnaryFunctions() throws {
        let fs: [UnaryFunction] = [.silu, .erf, .exp, .sin, .cos, .square, .neg, .abs, .sigmoid]
        for f in fs {
            try checkDerivatives(try graph { b, h in try b.unary(f, h) })
        }
        // Functions needing positive inputs: log, sqrt, reciprocal, pow.
        for f: UnaryFunction in [.log, .sqrt, .reciprocal, .pow(1.7)] {
            try checkDerivatives(try graph { b, h in
                let s = try b.unary(.softplus(beta: 1, threshold: 20), h)
                let half = b.parameter("half", Tensor(shape: [], scalars: [0.5]), trainable: false)
                return try b.unary(f, try b.add(s, half))
            })
        }
    }

    func testBroadcastingBinaryOps() throws {
        for f in BinaryFunction.allCases {
            // batched ∘ parameter [n], parameter [1, n], scalar parameter, and batched ∘ batched.
            for shape in [[6], [1, 6], []] {
                try checkDerivatives(try graph { b, h in
                    var c = self.random(shape, seed: 21)
                    if f == .div { c.scalars = c.scalars.map { 1.5 + abs($0) } }
                    let p = b.parameter("c", c)
                    return try b.apply(.binary(f), [h, p])
                })
                try checkDerivatives(try graph { b, h in
                    var c = self.random(shape, seed: 22)
                    c.scalars = c.scalars.map { 1.5 + abs($0) }
                    let p = b.parameter("c", c)
                    let h2 = f == .div ? try b.add(try b.unary(.square, h), b.parameter("one", Tensor(shape: [], scalars: [1]), trainable: false)) : h
                    return try b.apply(.binary(f), [p, h2])
                })
            }
            try checkDerivatives(try graph { b, h in
                let h2 = try b.linear(h, weight: self.random([6, 6], seed: 23), bias: nil, activation: .sigmoid, name: "h2")
                return try b.apply(.binary(f), [h, h2])
            })
        }
    }

    func testBroadcastAcrossFeatureAxes() throws {
        // [2, 3] per sample times a [3] parameter and a [2, 1] parameter, then reshape.
        try checkDerivatives(try graph { b, h in
            let r = try b.apply(.reshape(shape: [2, 3]), [h])
            let m = try b.mul(r, b.parameter("row", self.random([3], seed: 31)))
            let a = try b.add(m, b.parameter("col", self.random([2, 1], seed: 32)))
            return try b.apply(.reshape(shape: [6]), [a])
        })
    }

    func testConcatLayerNormReductions() throws {
        try checkDerivatives(try graph { b, h in
            let s = try b.unary(.sin, h)
            return try b.concat([h, s, b.t])
        })
        try checkDerivatives(try graph { b, h in
            try b.apply(.layerNorm(axis: -1, epsilon: 1e-5),
                        [h, b.parameter("g", self.random([6], seed: 41)), b.parameter("b", self.random([6], seed: 42))])
        })
        try checkDerivatives(try graph { b, h in
            let r = try b.apply(.reshape(shape: [2, 3]), [h])
            let mean = try b.apply(.reduceMean(axes: [-1], keepDims: true), [r])
            let c = try b.apply(.binary(.sub), [r, mean])
            let sum = try b.apply(.reduceSum(axes: [0], keepDims: false), [try b.unary(.square, c)])
            return try b.concat([h, sum])
        })
    }

    func testNativeMLPs() throws {
        for enc in [VelocityMLP.TimeEncoding.concat, .sinusoidal(frequencies: 4)] {
            for residual in [false, true] {
                let g = try VelocityMLP(dimension: 3, hiddenWidths: [8, 8], activation: .silu, timeEncoding: enc,
                                        residual: residual, seed: 5).makeGraph()
                try checkDerivatives(g)
            }
        }
    }

    /// The divergence is exact for a linear field v = A x: tr A.
    func testDivergenceOfLinearFieldIsTrace() throws {
        var b = GraphBuilder(dimension: 4)
        let a = random([4, 4], seed: 3)
        let out = try b.linear(b.x, weight: a, bias: nil, name: "A")
        let model = try Model(graph: try b.finish(output: out))
        let div = model.divergence(t: [0.3, 0.9], x: random([2, 4], seed: 4))
        let trace = (0..<4).reduce(0.0) { $0 + Double(a.scalars[$1 * 4 + $1]) }
        XCTAssertEqual(div[0], trace, accuracy: 1e-5)
        XCTAssertEqual(div[1], trace, accuracy: 1e-5)
    }
}
