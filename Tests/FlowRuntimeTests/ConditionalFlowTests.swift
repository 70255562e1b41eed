import XCTest
@testable import FlowRuntime

/// The exact trig-interpolant velocity of x | c ~ N(A c + b, diag s) with
/// base N(0, I) (DESIGN.md §1 "Analytic oracle", one component with mean
/// μ(c) = A c + b): per coordinate, with C̃ = α² + β² s,
///     v(t, x, c) = β' μ + a (x − β μ),   a = (αα' + ββ' s) / C̃,
/// so J_x v = diag(a) and ∇·v = Σ a. Independent of the network code.
struct ConditionalGaussianField: ConditionalVelocityField {
    let a: [[Double]]      // A, [d][m]
    let b: [Double]        // [d]
    let s: [Double]        // variances, [d]
    let schedule = TrigSchedule()

    var dimension: Int { b.count }
    var contextDimension: Int { a[0].count }
    func makeWorkspace() -> FieldWorkspace { FieldWorkspace() }

    func mean(_ c: UnsafePointer<Float>) -> [Double] {
        (0..<dimension).map { i in b[i] + (0..<contextDimension).reduce(0.0) { $0 + a[i][$1] * Double(c[$1]) } }
    }

    /// log N(x; μ(c), diag s).
    func logDensity(x: [Float], c: [Float]) -> Double {
        let mu = c.withUnsafeBufferPointer { mean($0.baseAddress!) }
        var l = 0.0
        for i in 0..<dimension {
            let e = Double(x[i]) - mu[i]
            l += -0.5 * (e * e / s[i] + log(2 * Double.pi * s[i]))
        }
        return l
    }

    private func rows(_ times: UnsafeBufferPointer<Double>, _ points: UnsafeBufferPointer<Float>,
                      _ contexts: UnsafeBufferPointer<Float>?, _ body: (Int, [Double], [Double], Double) -> Void) {
        let d = dimension, m = contextDimension
        for r in 0..<times.count {
            let q = schedule.coefficients(at: times[r])
            let mu = mean(contexts!.baseAddress! + r * m)
            var v = [Double](repeating: 0, count: d), slope = v
            for i in 0..<d {
                let ct = q.alpha * q.alpha + q.beta * q.beta * s[i]
                slope[i] = (q.alpha * q.alphaDot + q.beta * q.betaDot * s[i]) / ct
                v[i] = q.betaDot * mu[i] + slope[i] * (Double(points[r * d + i]) - q.beta * mu[i])
            }
            body(r, v, slope, slope.reduce(0, +))
        }
    }

    func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                  contexts: UnsafeBufferPointer<Float>?, into velocities: UnsafeMutableBufferPointer<Float>,
                  workspace: FieldWorkspace) {
        let d = dimension
        rows(times, points, contexts) { r, v, _, _ in for i in 0..<d { velocities[r * d + i] = Float(v[i]) } }
    }

    func velocityJVP(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                     contexts: UnsafeBufferPointer<Float>?, tangents: UnsafeBufferPointer<Float>, k: Int,
                     into velocities: UnsafeMutableBufferPointer<Float>, products: UnsafeMutableBufferPointer<Float>,
                     workspace: FieldWorkspace) {
        let d = dimension
        rows(times, points, contexts) { r, v, slope, _ in
            for i in 0..<d { velocities[r * d + i] = Float(v[i]) }
            for j in 0..<k { for i in 0..<d { products[(r * k + j) * d + i] = Float(slope[i] * Double(tangents[(r * k + j) * d + i])) } }
        }
    }

    func velocityDivergence(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                            contexts: UnsafeBufferPointer<Float>?, into velocities: UnsafeMutableBufferPointer<Float>,
                            divergences: UnsafeMutableBufferPointer<Double>, workspace: FieldWorkspace) {
        let d = dimension
        rows(times, points, contexts) { r, v, _, div in
            for i in 0..<d { velocities[r * d + i] = Float(v[i]) }
            divergences[r] = div
        }
    }

    // Unconditional requirements: not used by conditional runs.
    func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                  into velocities: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        fatalError("a conditional run must pass contexts")
    }
    func velocityJVP(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                     tangents: UnsafeBufferPointer<Float>, k: Int, into velocities: UnsafeMutableBufferPointer<Float>,
                     products: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        fatalError("a conditional run must pass contexts")
    }
}

final class ConditionalFlowTests: XCTestCase {
    static let field = ConditionalGaussianField(
        a: [[1.0, -0.5, 0.25], [0.3, 0.8, -1.2]], b: [0.5, -1.0], s: [0.36, 1.69])

    /// `n` contexts [n, 3] spread over a few units.
    static func contexts(_ n: Int, seed: UInt64 = 7) -> Tensor {
        var rng = RandomStream(seed: seed, purpose: .custom, index: 0)
        return Tensor(shape: [n, 3], scalars: (0..<(n * 3)).map { _ in Float(1.5 * rng.nextNormal()) })
    }

    /// Points near each context's conditional mean.
    static func points(for c: Tensor, seed: UInt64 = 8) -> Tensor {
        let n = c.shape[0], d = field.dimension
        var rng = RandomStream(seed: seed, purpose: .custom, index: 1)
        var x = [Float](repeating: 0, count: n * d)
        c.scalars.withUnsafeBufferPointer { cb in
            for r in 0..<n {
                let mu = field.mean(cb.baseAddress! + r * 3)
                for i in 0..<d { x[r * d + i] = Float(mu[i] + 1.5 * field.s[i].squareRoot() * rng.nextNormal()) }
            }
        }
        return Tensor(shape: [n, d], scalars: x)
    }

    /// log ρ1(x | c) of many (x_i, c_i) in one batch, each with its own
    /// context, against the closed-form conditional Gaussian: within 1e-4
    /// nats (exact divergence, dopri5 at rtol = atol = 1e-8).
    func testExactConditionalLogDensityMatchesClosedForm() throws {
        let flow = try Flow(field: Self.field)
        XCTAssertEqual(flow.contextDimension, 3)
        let c = Self.contexts(300), x = Self.points(for: c)
        let r = try flow.logDensity(points: x, contexts: c, solver: .dopri5(rtol: 1e-8, atol: 1e-8))
        XCTAssertTrue(r.statistics.isComplete)
        var worst = 0.0
        for i in 0..<300 {
            let exact = Self.field.logDensity(x: Array(x.scalars[(2 * i)..<(2 * i + 2)]), c: Array(c.scalars[(3 * i)..<(3 * i + 3)]))
            worst = max(worst, abs(r.logDensities[i] - exact))
        }
        print("conditional analytic flow: max |log ρ1(x|c) − exact| over 300 contexts = \(worst)")
        XCTAssertLessThan(worst, 1e-4)
        // Encoding with the same contexts gives the base points of the likelihood pass.
        let z = try flow.encode(points: x, contexts: c, solver: .dopri5(rtol: 1e-8, atol: 1e-8))
        for j in 0..<z.points.count { XCTAssertEqual(z.points.scalars[j], r.basePoints.scalars[j], accuracy: 1e-4) }
    }

    /// Hutchinson log-densities: unbiased, so the mean error over the batch
    /// is within a few standard errors of zero.
    func testHutchinsonConditionalLogDensity() throws {
        let flow = try Flow(field: Self.field)
        let c = Self.contexts(400, seed: 3), x = Self.points(for: c, seed: 4)
        let r = try flow.logDensity(points: x, contexts: c, method: .hutchinson(probes: 4, kind: .rademacher, seed: 1),
                                    solver: .dopri5(rtol: 1e-7, atol: 1e-7))
        var sum = 0.0, sumSE2 = 0.0
        for i in 0..<400 {
            let exact = Self.field.logDensity(x: Array(x.scalars[(2 * i)..<(2 * i + 2)]), c: Array(c.scalars[(3 * i)..<(3 * i + 3)]))
            sum += r.logDensities[i] - exact
            sumSE2 += pow(r.standardErrors![i].isNaN ? 0 : r.standardErrors![i], 2)
        }
        let meanError = sum / 400, se = sumSE2.squareRoot() / 400
        print("conditional Hutchinson: mean error \(meanError) ± \(se)")
        // A diagonal Jacobian with Rademacher probes has zero variance: exact.
        XCTAssertLessThan(abs(meanError), 1e-4 + 4 * se)
    }

    /// Samples for one context match N(A c + b, diag s); samples with one
    /// context per point have standardized residuals with mean 0, variance 1;
    /// the sampled log-densities match the closed form.
    func testConditionalSamplesMatchMoments() throws {
        let flow = try Flow(field: Self.field)
        let n = 4000
        let one = Tensor(shape: [3], scalars: [0.8, -1.1, 0.4])
        let mu = one.scalars.withUnsafeBufferPointer { Self.field.mean($0.baseAddress!) }
        let s = try flow.sample(count: n, seed: 11, contexts: one, solver: .dopri5(rtol: 1e-6, atol: 1e-6),
                                logDensity: .exact)
        for i in 0..<2 {
            let col = (0..<n).map { Double(s.points.scalars[2 * $0 + i]) }
            let mean = col.reduce(0, +) / Double(n)
            let variance = col.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
            print("one context: coordinate \(i) mean \(mean) (exact \(mu[i])), variance \(variance) (exact \(Self.field.s[i]))")
            XCTAssertEqual(mean, mu[i], accuracy: 4 * (Self.field.s[i] / Double(n)).squareRoot())
            XCTAssertEqual(variance / Self.field.s[i], 1, accuracy: 0.1)
        }
        var worst = 0.0
        for i in 0..<200 {
            worst = max(worst, abs(s.logDensities![i] - Self.field.logDensity(x: Array(s.points.scalars[(2 * i)..<(2 * i + 2)]), c: one.scalars)))
        }
        XCTAssertLessThan(worst, 1e-3)

        let c = Self.contexts(n, seed: 5)
        let per = try flow.sample(count: n, seed: 12, contexts: c, solver: .dopri5(rtol: 1e-6, atol: 1e-6))
        var z = [[Double]](repeating: [], count: 2)
        c.scalars.withUnsafeBufferPointer { cb in
            for r in 0..<n {
                let m = Self.field.mean(cb.baseAddress! + 3 * r)
                for i in 0..<2 { z[i].append((Double(per.points.scalars[2 * r + i]) - m[i]) / Self.field.s[i].squareRoot()) }
            }
        }
        for i in 0..<2 {
            let mean = z[i].reduce(0, +) / Double(n)
            let variance = z[i].reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
            XCTAssertEqual(mean, 0, accuracy: 4 / Double(n).squareRoot())
            XCTAssertEqual(variance, 1, accuracy: 0.1)
        }
    }

    /// Each sample's result is independent of its batch, contexts included:
    /// sample i alone (first index i, its own context) is bit-identical to
    /// row i of the batch; likewise for log-densities.
    func testConditionalResultsDoNotDependOnTheBatch() throws {
        let flow = try Flow(field: Self.field)
        let c = Self.contexts(40, seed: 9)
        let all = try flow.sample(count: 40, seed: 3, contexts: c, logDensity: .exact)
        let x = Self.points(for: c)
        let lp = try flow.logDensity(points: x, contexts: c)
        for i in [0, 17, 39] {
            let ci = c.rows(i..<i + 1)
            let alone = try flow.sample(count: 1, seed: 3, contexts: ci, logDensity: .exact, firstIndex: UInt64(i))
            XCTAssertEqual(alone.points.scalars, Array(all.points.scalars[(2 * i)..<(2 * i + 2)]))
            XCTAssertEqual(alone.logDensities![0], all.logDensities![i])
            let l = try flow.logDensity(points: x.rows(i..<i + 1), contexts: ci)
            XCTAssertEqual(l.logDensities[0], lp.logDensities[i])
        }
    }

    /// Misuse gives clear errors: a conditional flow without contexts names
    /// what to pass; wrong shapes; contexts for an unconditional flow;
    /// guidance with a log-density or without labels.
    func testConditionalMisuseErrors() throws {
        let flow = try Flow(field: Self.field)
        XCTAssertThrowsError(try flow.sample(count: 3, seed: 0)) { e in
            guard case FlowError.invalidArgument(let m) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("pass contexts [n, 3]"), m)
        }
        XCTAssertThrowsError(try flow.logDensity(points: Tensor(shape: [2, 2], repeating: 0))) { e in
            guard case FlowError.invalidArgument(let m) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("conditional"), m)
        }
        XCTAssertThrowsError(try flow.sample(count: 3, seed: 0, contexts: Tensor(shape: [2, 3], repeating: 0))) { e in
            guard case FlowError.shapeMismatch = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try flow.logDensity(points: Tensor(shape: [2, 2], repeating: 0),
                                                 contexts: Tensor(shape: [2, 3], scalars: [0, 0, .nan, 0, 0, 0]))) { e in
            guard case FlowError.nonFinite = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try flow.sample(count: 2, seed: 0, contexts: Self.contexts(2), guidance: 1)) { e in
            guard case FlowError.unsupported = e else { return XCTFail("\(e)") }
        }
        let plain = try Flow(field: try VelocityMLP(dimension: 2, hiddenWidths: [8]).makeModel())
        XCTAssertThrowsError(try plain.sample(count: 2, seed: 0, contexts: Self.contexts(2))) { e in
            guard case FlowError.invalidArgument(let m) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("unconditional"), m)
        }
    }

    /// Label model: guidance w ≠ 0 samples (v = (1 + w) v̂(c) − w v̂(∅))
    /// and refuses log-densities; w = 0 is the conditional flow.
    func testGuidanceOnALabelNetwork() throws {
        var b = GraphBuilder(dimension: 2)
        let label = b.addContext(shape: [])
        let table = b.parameter("embedding", Tensor(shape: [3, 2], scalars: [1, 0, 0, 1, 0, 0]))
        let e = try b.apply(.embedding, [table, label], name: "embed")
        let h = try b.concat([b.x, b.t, e], name: "h")
        var rng = RandomStream(seed: 1, purpose: .custom, index: 0)
        let w = Tensor(shape: [2, 5], scalars: (0..<10).map { _ in Float(0.5 * rng.nextNormal()) })
        let out = try b.linear(h, weight: w, bias: Tensor(shape: [2], repeating: 0), activation: .identity, name: "out")
        let model = try Model(graph: try b.finish(output: out))
        XCTAssertEqual(model.classCount, 3)
        let flow = try Flow(field: model)
        let labels = Tensor(shape: [4], scalars: [0, 1, 0, 1])
        let plain = try flow.sample(count: 4, seed: 2, contexts: labels, solver: .fixed(.rk4, steps: 20))
        let guided0 = try flow.sample(count: 4, seed: 2, contexts: labels, guidance: 0, solver: .fixed(.rk4, steps: 20))
        XCTAssertEqual(plain.points.scalars, guided0.points.scalars)
        let guided = try flow.sample(count: 4, seed: 2, contexts: labels, guidance: 2, solver: .fixed(.rk4, steps: 20))
        XCTAssertNotEqual(plain.points.scalars, guided.points.scalars)
        // The guided velocity is (1 + w) v(c) − w v(∅), checked pointwise.
        let g = GuidedField(field: model, nullLabel: 2, weight: 2)
        let t: [Double] = [0.3, 0.7], x: [Float] = [0.1, -0.2, 0.5, 0.4], c: [Float] = [0, 1]
        var vg = [Float](repeating: 0, count: 4)
        t.withUnsafeBufferPointer { tb in x.withUnsafeBufferPointer { xb in c.withUnsafeBufferPointer { cb in
            vg.withUnsafeMutableBufferPointer { g.velocity(times: tb, points: xb, contexts: cb, into: $0, workspace: g.makeWorkspace()) }
        } } }
        let vc = model.velocity(t: t, x: Tensor(shape: [2, 2], scalars: x), context: Tensor(shape: [2], scalars: c))
        let vn = model.velocity(t: t, x: Tensor(shape: [2, 2], scalars: x), context: Tensor(shape: [2], scalars: [2, 2]))
        for j in 0..<4 { XCTAssertEqual(vg[j], 3 * vc.scalars[j] - 2 * vn.scalars[j], accuracy: 1e-5) }
        XCTAssertThrowsError(try flow.sample(count: 4, seed: 2, contexts: labels, guidance: 2, logDensity: .exact)) { e in
            guard case FlowError.invalidArgument(let m) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("guidance"), m)
        }
        XCTAssertThrowsError(try flow.sample(count: 1, seed: 2, contexts: Tensor(shape: [1], scalars: [3]))) { e in
            guard case FlowError.invalidArgument = e else { return XCTFail("\(e)") }
        }
    }

    /// A conditional MLP with contextDimension 0 is the unconditional MLP
    /// (same graph, same weights).
    func testUnconditionalMLPIsUnchanged() throws {
        let a = try VelocityMLP(dimension: 3, hiddenWidths: [16, 16], seed: 5).makeGraph()
        let b = try VelocityMLP(dimension: 3, hiddenWidths: [16, 16], seed: 5, contextDimension: 0).makeGraph()
        XCTAssertNil(a.context)
        XCTAssertEqual(a.parameters.map(\.tensor), b.parameters.map(\.tensor))
        let c = try VelocityMLP(dimension: 3, hiddenWidths: [16, 16], seed: 5, contextDimension: 4).makeModel()
        XCTAssertEqual(c.contextDimension, 4)
        XCTAssertEqual(c.graph.parameters[0].tensor.shape, [16, 3 + 1 + 4])
        let labels = try VelocityMLP(dimension: 3, hiddenWidths: [16], seed: 5, classCount: 4, labelEmbeddingWidth: 6).makeModel()
        XCTAssertEqual(labels.contextDimension, 1)
        XCTAssertEqual(labels.classCount, 4)
        XCTAssertThrowsError(try VelocityMLP(dimension: 3, contextDimension: 2, classCount: 4).makeGraph())
    }

    /// Gaussian-linear simulation-based inference, scaled down: θ ~ N(0, 0.1 I₂),
    /// x | θ ~ N(θ, 0.1 I₂), so θ | x ~ N(x / 2, 0.05 I₂). A conditional MLP
    /// trained 1500 steps on 20 000 simulated pairs gives posterior samples
    /// whose mean and variance match the closed form, and log p(θ | x) close
    /// to the exact Gaussian's; training is deterministic across threads.
    func testTrainedConditionalMLPRecoversGaussianLinearPosterior() throws {
        let n = 20_000
        var rng = RandomStream(seed: 21, purpose: .custom, index: 0)
        var theta = [Float](), obs = [Float]()
        for _ in 0..<n {
            for _ in 0..<2 {
                let th = 0.1.squareRoot() * rng.nextNormal()
                theta.append(Float(th)); obs.append(Float(th + 0.1.squareRoot() * rng.nextNormal()))
            }
        }
        let mlp = VelocityMLP(dimension: 2, hiddenWidths: [64, 64], seed: 3, contextDimension: 2)
        func trainer(threads: Int) throws -> Trainer {
            let lr = LearningRateSchedule(learningRate: 3e-3, decay: .cosine(totalSteps: 1500, minimumFactor: 0.05))
            let config = TrainerConfiguration(batchSize: 256, learningRate: lr,
                                              emaDecay: 0.99, seed: 5, threads: threads, chunkSize: 64)
            return try Trainer(graph: mlp.makeGraph(), data: .samples(theta), contexts: obs, configuration: config)
        }
        // Determinism across thread counts (a few steps).
        let t1 = try trainer(threads: 1), t2 = try trainer(threads: 2)
        for _ in 0..<3 { try t1.step(); try t2.step() }
        XCTAssertEqual(t1.rawParameters.map(\.tensor), t2.rawParameters.map(\.tensor))

        let t = try trainer(threads: 2)
        try t.fit(steps: 1500)
        let heldOut = try XCTUnwrap(t.lastHeldOutLoss)
        print("SBI Gaussian-linear: held-out loss \(heldOut.quadratic), regression \(heldOut.regression)")
        let flow = try Flow(field: t.model())
        var worstMean = 0.0, worstVariance = 0.0, worstLogDensity = 0.0
        for (k, xo) in [[Float(0.3), -0.2], [-0.5, 0.1], [0.0, 0.45]].enumerated() {
            let post = try flow.sample(count: 2000, seed: UInt64(k), contexts: Tensor(shape: [2], scalars: xo),
                                       solver: .dopri5(rtol: 1e-5, atol: 1e-5))
            for i in 0..<2 {
                let col = (0..<2000).map { Double(post.points.scalars[2 * $0 + i]) }
                let mean = col.reduce(0, +) / 2000
                let variance = col.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / 1999
                worstMean = max(worstMean, abs(mean - Double(xo[i]) / 2))
                worstVariance = max(worstVariance, abs(variance / 0.05 - 1))
            }
            // log p(θ | x_obs) at posterior-typical θ vs the exact N(x/2, 0.05 I).
            let thetas = Tensor(shape: [5, 2], scalars: (0..<10).map { j in xo[j % 2] / 2 + Float(0.1 * Double(j - 5) / 5) })
            let contexts = Tensor(shape: [5, 2], scalars: (0..<5).flatMap { _ in xo })
            let lp = try flow.logDensity(points: thetas, contexts: contexts)
            for r in 0..<5 {
                var exact = 0.0
                for i in 0..<2 {
                    let e = Double(thetas.scalars[2 * r + i]) - Double(xo[i]) / 2
                    exact += -0.5 * (e * e / 0.05 + log(2 * Double.pi * 0.05))
                }
                worstLogDensity = max(worstLogDensity, abs(lp.logDensities[r] - exact))
            }
        }
        print("SBI Gaussian-linear posterior: max |mean error| \(worstMean) (posterior sd 0.224), max |var/exact − 1| \(worstVariance), max |log p error| \(worstLogDensity) nats")
        XCTAssertLessThan(worstMean, 0.04)
        XCTAssertLessThan(worstVariance, 0.25)
        XCTAssertLessThan(worstLogDensity, 0.25)
    }
}
