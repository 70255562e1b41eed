import XCTest
@testable import FlowRuntime

final class LikelihoodTests: XCTestCase {
    /// The analytic flow's closed-form log ρ1 (eigendecomposition) equals the
    /// mixture's own log-density (Cholesky), and log ρ0 the standard normal's:
    /// two independent computations, to 1e-10.
    func testClosedFormEndpoints() throws {
        let mixture = try Fixtures.mixture(dimension: 3, seed: 2)
        let flow = AnalyticMixtureFlow(mixture: mixture, schedule: TestTrigSchedule())
        let x = Fixtures.points(50, dimension: 3, seed: 3, scale: 2)
        let a = flow.logDensity(points: x, time: 1), b = mixture.logDensity(of: x)
        let c = flow.logDensity(points: x, time: 0), n = StandardNormal(dimension: 3).logDensity(of: x)
        for i in 0..<50 {
            XCTAssertEqual(a[i], b[i], accuracy: 1e-10)
            XCTAssertEqual(c[i], n[i], accuracy: 1e-10)
        }
    }

    /// The analytic JVP and divergence against central differences of the
    /// analytic velocity (Double inside, Float out: step 1e-3, tolerance 2e-3).
    func testAnalyticDerivativesMatchFiniteDifferences() throws {
        let flow = AnalyticMixtureFlow(mixture: try Fixtures.mixture(dimension: 3, seed: 4), schedule: TestLinearSchedule())
        let x = Fixtures.points(4, dimension: 3, seed: 5).scalars
        let t = [0.2, 0.5, 0.7, 0.95]
        let d = 3, ws = flow.makeWorkspace()
        func v(_ xs: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: xs.count)
            t.withUnsafeBufferPointer { tb in xs.withUnsafeBufferPointer { xb in out.withUnsafeMutableBufferPointer {
                flow.velocity(times: tb, points: xb, into: $0, workspace: ws) } } }
            return out
        }
        var tangents = [Float](repeating: 0, count: 4 * d * d)
        for i in 0..<4 { for j in 0..<d { tangents[(i * d + j) * d + j] = 1 } }
        var vel = [Float](repeating: 0, count: 4 * d), prod = [Float](repeating: 0, count: 4 * d * d)
        var div = [Double](repeating: 0, count: 4)
        t.withUnsafeBufferPointer { tb in x.withUnsafeBufferPointer { xb in tangents.withUnsafeBufferPointer { tn in
            vel.withUnsafeMutableBufferPointer { vb in prod.withUnsafeMutableBufferPointer { pb in
                flow.velocityJVP(times: tb, points: xb, tangents: tn, k: d, into: vb, products: pb, workspace: ws) } }
            vel.withUnsafeMutableBufferPointer { vb in div.withUnsafeMutableBufferPointer { db in
                flow.velocityDivergence(times: tb, points: xb, into: vb, divergences: db, workspace: ws) } }
        } } }
        let h: Float = 1e-3
        for j in 0..<d {
            var xp = x, xm = x
            for i in 0..<4 { xp[i * d + j] += h; xm[i * d + j] -= h }
            let vp = v(xp), vm = v(xm)
            for i in 0..<4 { for r in 0..<d {
                let fd = Double(vp[i * d + r] - vm[i * d + r]) / Double(2 * h)
                XCTAssertEqual(Double(prod[(i * d + j) * d + r]), fd, accuracy: 2e-3 * max(1, abs(fd)))
            } }
        }
        for i in 0..<4 {
            let trace = (0..<d).reduce(0.0) { $0 + Double(prod[(i * d + $1) * d + $1]) }
            XCTAssertEqual(div[i], trace, accuracy: 1e-5 * max(1, abs(trace)))
        }
    }

    /// log ρ1 from sampling forward (one pass) against the mixture's closed
    /// form: within 1e-4 nats with dopri5 at rtol 1e-6.
    func testForwardLogDensityMatchesMixture() throws {
        let mixture = try Fixtures.mixture2D()
        let flow = AnalyticMixtureFlow(mixture: mixture, schedule: TestTrigSchedule())
        let x0 = StandardNormal(dimension: 2).samples(count: 200, seed: 7)
        let r = try Transport.integrateWithLogDensityChange(field: flow, points: x0, from: 0, to: 1, divergence: .exact,
                                                            options: .dopri5(rtol: 1e-6, atol: 1e-6))
        let base = StandardNormal(dimension: 2).logDensity(of: x0)
        // Compare at the Float end points the flow returned.
        let exact = mixture.logDensity(of: r.points)
        var worst = 0.0
        for i in 0..<200 { worst = max(worst, abs(base[i] + r.change[i] - exact[i])) }
        XCTAssertLessThan(worst, 1e-4)
    }

    /// log ρ_t(x) by backward integration against the closed form at t = 1
    /// and t = 0.5, in d = 2 and d = 4, for both schedules.
    func testLogDensityAtAnyTimeMatchesClosedForm() throws {
        for (d, seed) in [(2, UInt64(1)), (4, UInt64(2))] {
            let mixture = d == 2 ? try Fixtures.mixture2D() : try Fixtures.mixture(dimension: d, seed: seed)
            for schedule in [TestTrigSchedule() as any Schedule, TestLinearSchedule()] {
                let flow = AnalyticMixtureFlow(mixture: mixture, schedule: schedule)
                for t in [1.0, 0.5] {
                    // Points typical for ρ_t: push base samples to t.
                    let x0 = StandardNormal(dimension: d).samples(count: 60, seed: seed + 10)
                    let x = try Transport.integrate(field: flow, points: x0, from: 0, to: t, options: .dopri5()).points
                    let r = try Likelihood.logDensity(field: flow, base: StandardNormal(dimension: d), points: x, time: t,
                                                      divergence: .exact, options: .dopri5(rtol: 1e-6, atol: 1e-6))
                    let exact = flow.logDensity(points: x, time: t)
                    for i in 0..<60 {
                        XCTAssertEqual(r.logDensities[i], exact[i], accuracy: 1e-4, "d = \(d), \(schedule.name), t = \(t)")
                    }
                    XCTAssertNil(r.standardErrors)
                }
            }
        }
    }

    /// Hutchinson is unbiased: with K = 64 probes the estimate lies within 3
    /// of its own standard errors of the exact value, for the analytic field
    /// and for an MLP.
    func testHutchinsonIsUnbiased() throws {
        let d = 3
        let mixture = try Fixtures.mixture(dimension: d, seed: 6)
        let mlp = try VelocityMLP(dimension: d, hiddenWidths: [32, 32], activation: .tanh, seed: 2).makeModel()
        let fields: [any VelocityField] = [AnalyticMixtureFlow(mixture: mixture, schedule: TestTrigSchedule()), mlp]
        for field in fields {
            let x = Fixtures.points(8, dimension: d, seed: 12)
            let o = SolverOptions.dopri5(rtol: 1e-6, atol: 1e-6)
            let exact = try Likelihood.logDensity(field: field, base: StandardNormal(dimension: d), points: x, time: 1,
                                                  divergence: .exact, options: o)
            for kind in [DivergenceMethod.ProbeKind.rademacher, .gaussian] {
                let h = try Likelihood.logDensity(field: field, base: StandardNormal(dimension: d), points: x, time: 1,
                                                  divergence: .hutchinson(probes: 64, kind: kind, seed: 3), options: o)
                let se = try XCTUnwrap(h.standardErrors)
                for i in 0..<8 {
                    XCTAssertGreaterThan(se[i], 0)
                    XCTAssertLessThan(abs(h.logDensities[i] - exact.logDensities[i]), 3 * se[i] + 1e-4, "\(kind) sample \(i)")
                }
                // The same trajectories: the encodings agree.
                XCTAssertLessThan(h.basePoints.maxAbsDifference(exact.basePoints), 1e-3)
            }
        }
    }

    /// Exact divergence of a VelocityMLP (one batched k = d tangent pass)
    /// against central differences of its velocity.
    func testMLPDivergenceMatchesFiniteDifferences() throws {
        let d = 4
        let model = try VelocityMLP(dimension: d, hiddenWidths: [16, 16], activation: .tanh, seed: 8).makeModel()
        let x = Fixtures.points(5, dimension: d, seed: 13)
        let t = [0.1, 0.3, 0.5, 0.7, 0.9]
        let div = model.divergence(t: t, x: x)
        let h: Float = 1e-2
        for i in 0..<5 {
            var fd = 0.0
            for j in 0..<d {
                var xp = x, xm = x
                xp.scalars[i * d + j] += h; xm.scalars[i * d + j] -= h
                let vp = model.velocity(t: t, x: xp), vm = model.velocity(t: t, x: xm)
                fd += Double(vp.scalars[i * d + j] - vm.scalars[i * d + j]) / Double(2 * h)
            }
            XCTAssertEqual(div[i], fd, accuracy: 2e-3 * max(1, abs(fd)))
        }
    }

    /// Log-densities (exact and Hutchinson) are bit-identical for 1, 2 and 8
    /// threads (probes are keyed by sample, chunks are fixed). Across chunk
    /// sizes they agree to the network's float rounding: a row's GEMM result
    /// may depend on how many rows share the call (≈1e-7 relative), which can
    /// also flip a borderline accept/reject, so only closeness is asserted.
    func testLikelihoodIdenticalForAnyThreadCount() throws {
        let model = try VelocityMLP(dimension: 3, hiddenWidths: [16, 16], seed: 6).makeModel()
        let x = Fixtures.points(700, dimension: 3, seed: 14)
        for method in [DivergenceMethod.exact, .hutchinson(probes: 2, kind: .gaussian, seed: 9)] {
            var reference: LogDensityResult?
            for (threads, chunk) in [(1, 128), (2, 128), (8, 128), (1, 1024), (2, 50)] {
                var o = SolverOptions.dopri5()
                o.threads = threads
                o.chunkSize = chunk
                let r = try Likelihood.logDensity(field: model, base: StandardNormal(dimension: 3), points: x, time: 1,
                                                  divergence: method, options: o)
                guard let ref = reference else { reference = r; continue }
                if chunk == 128 {
                    XCTAssertEqual(r.logDensities, ref.logDensities, "\(method), threads \(threads)")
                    XCTAssertEqual(r.standardErrors, ref.standardErrors)
                    XCTAssertEqual(r.samples, ref.samples)
                } else {
                    for i in 0..<700 { XCTAssertEqual(r.logDensities[i], ref.logDensities[i], accuracy: 1e-5) }
                }
            }
        }
    }

    /// With a field whose rows are computed independently (the analytic
    /// velocity), the integrator itself adds no batch dependence: any chunk
    /// size and thread count gives bit-identical results and step counts.
    func testIntegratorIsRowIndependent() throws {
        let flow = AnalyticMixtureFlow(mixture: try Fixtures.mixture2D(), schedule: TestTrigSchedule())
        let x = Fixtures.points(300, dimension: 2, seed: 15, scale: 2)
        var reference: LogDensityResult?
        for (threads, chunk) in [(1, 1024), (2, 7), (8, 64), (1, 1)] {
            var o = SolverOptions.dopri5(rtol: 1e-6, atol: 1e-6)
            o.threads = threads
            o.chunkSize = chunk
            let r = try Likelihood.logDensity(field: flow, base: StandardNormal(dimension: 2), points: x, time: 1,
                                              divergence: .exact, options: o)
            if let ref = reference {
                XCTAssertEqual(r.logDensities, ref.logDensities, "threads \(threads), chunk \(chunk)")
                XCTAssertEqual(r.samples, ref.samples)
            } else { reference = r }
        }
    }

    func testBadLikelihoodArguments() throws {
        let flow = AnalyticMixtureFlow(mixture: try Fixtures.mixture2D(), schedule: TestTrigSchedule())
        let x = Fixtures.points(2, dimension: 2, seed: 1)
        XCTAssertThrowsError(try Likelihood.logDensity(field: flow, base: StandardNormal(dimension: 2), points: x, time: 1.5,
                                                       divergence: .exact, options: .dopri5()))
        XCTAssertThrowsError(try Likelihood.logDensity(field: flow, base: StandardNormal(dimension: 3), points: x, time: 1,
                                                       divergence: .exact, options: .dopri5()))
        XCTAssertThrowsError(try Likelihood.logDensity(field: flow, base: StandardNormal(dimension: 2), points: x, time: 1,
                                                       divergence: .hutchinson(probes: 0, kind: .gaussian, seed: 0), options: .dopri5()))
    }
}
