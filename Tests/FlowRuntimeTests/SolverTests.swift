import XCTest
@testable import FlowRuntime

final class SolverTests: XCTestCase {
    // MARK: Tableaus

    func testBuiltInTableausAreConsistent() throws {
        for m in ButcherTableau.builtIn {
            // Re-validate through the initialiser (the statics use try!).
            let again = try ButcherTableau(name: m.name, a: m.a, b: m.b, c: m.c, errorWeights: m.errorWeights,
                                           order: m.order, embeddedOrder: m.embeddedOrder)
            XCTAssertEqual(again, m)
        }
        XCTAssertTrue(ButcherTableau.dopri5.firstSameAsLast)
        XCTAssertFalse(ButcherTableau.rk4.firstSameAsLast)
        XCTAssertEqual(ButcherTableau.named("RK4")?.name, "rk4")
    }

    func testInconsistentTableausAreRejected() {
        XCTAssertThrowsError(try ButcherTableau(name: "bad-b", a: [[], [1]], b: [0.5, 0.6], c: [0, 1], order: 2))
        XCTAssertThrowsError(try ButcherTableau(name: "bad-c", a: [[], [1]], b: [0.5, 0.5], c: [0, 0.5], order: 2))
        XCTAssertThrowsError(try ButcherTableau(name: "ragged", a: [[], [1, 0]], b: [0.5, 0.5], c: [0, 1], order: 2))
        XCTAssertThrowsError(try ButcherTableau(name: "bad-e", a: [[], [1]], b: [0.5, 0.5], c: [0, 1],
                                                errorWeights: [0.1, 0.1], order: 2, embeddedOrder: 1))
        var o = SolverOptions(tableau: .rk4, control: .adaptive(StepSizeController()))
        XCTAssertThrowsError(try o.validate(), "rk4 has no error estimate")
        o = .fixed(.rk4, steps: 0)
        XCTAssertThrowsError(try o.validate())
    }

    // MARK: Convergence order

    /// Error at t1 of dx/dt = k cos(t) x over [0, 2.5] against exp(k sin t),
    /// for step counts N, 2N, 4N, 8N: the least-squares slope of log error
    /// against log h must be within ±0.3 of the tableau's order. The step
    /// counts keep errors between ~1e-2 and ~1e-5 (above the float32 floor
    /// of the velocities, ~1e-6 here) so the slope is the truncation order.
    func testConvergenceOrders() throws {
        let x0 = Tensor(shape: [1, 1], scalars: [1])
        let cases: [(ButcherTableau, Int, Double)] = [(.euler, 40, 1.5), (.heun, 16, 1.5), (.midpoint, 16, 1.5),
                                                      (.rk4, 4, 1.5), (.dopri5, 4, 3)]
        for (method, n0, k) in cases {
            let field = ExponentialSineField(dimension: 1, k: k)
            var logH: [Double] = [], logE: [Double] = []
            for n in [n0, 2 * n0, 4 * n0, 8 * n0] {
                var o = SolverOptions.fixed(method, steps: n)
                o.threads = 1
                let r = try Transport.integrate(field: field, points: x0, from: 0, to: 2.5, options: o)
                XCTAssertEqual(r.samples[0].steps, Int32(n))
                let err = abs(Double(r.points.scalars[0]) - field.exact(1, from: 0, to: 2.5))
                logH.append(log(2.5 / Double(n))); logE.append(log(err))
            }
            let slope = leastSquaresSlope(logH, logE)
            XCTAssertEqual(slope, Double(method.order), accuracy: 0.3, "\(method.name): errors \(logE.map { exp($0) })")
        }
    }

    func leastSquaresSlope(_ x: [Double], _ y: [Double]) -> Double {
        let mx = x.reduce(0, +) / Double(x.count), my = y.reduce(0, +) / Double(y.count)
        var sxy = 0.0, sxx = 0.0
        for (a, b) in zip(x, y) { sxy += (a - mx) * (b - my); sxx += (a - mx) * (a - mx) }
        return sxy / sxx
    }

    // MARK: Adaptive runs

    func testAdaptiveMeetsToleranceForwardAndBackward() throws {
        let field = ExponentialSineField(dimension: 2, k: 1.5)
        let x = Tensor(shape: [3, 2], scalars: [1, -2, 0.5, 3, -1, 0.1])
        for (t0, t1) in [(0.0, 2.5), (2.5, -0.5)] {
            let r = try Transport.integrate(field: field, points: x, from: t0, to: t1, options: .dopri5(rtol: 1e-6, atol: 1e-8))
            XCTAssertTrue(r.statistics.isComplete)
            for i in 0..<6 {
                let exact = field.exact(Double(x.scalars[i]), from: t0, to: t1)
                XCTAssertEqual(Double(r.points.scalars[i]), exact, accuracy: 2e-5 * max(1, abs(exact)), "t0 = \(t0)")
            }
            // 6 evaluations per attempted step (FSAL) + 2 for step selection.
            for s in r.samples {
                XCTAssertEqual(s.evaluations, 6 * (s.steps + s.rejections) + 2)
            }
        }
    }

    /// A field that blows up in finite time (dx/dt = x² + 1) stops with
    /// `.stepUnderflow` at its blow-up time π/2 − atan x0 (1e-6), not with
    /// `.maxSteps`, whatever max steps allows; a sample whose blow-up time
    /// lies past t = 1 finishes at tan(1 + atan x0). Statistics count the
    /// underflows, name the first (index, time, step) and keep it through
    /// blocked runs (`merge`), and the message says max steps will not help.
    func testStepUnderflowIsReportedAsSuch() throws {
        let field = TangentBlowUpField(dimension: 1)
        let x0: [Float] = [0, 1, -0.5, 2]
        for maxSteps in [10_000, 1_000_000] {
            var o = SolverOptions.dopri5(rtol: 1e-6, atol: 1e-6)
            o.maxSteps = maxSteps
            let r = try Transport.integrate(field: field, points: Tensor(shape: [4, 1], scalars: x0), from: 0, to: 1, options: o)
            XCTAssertEqual(r.samples.map(\.status), [.ok, .stepUnderflow, .ok, .stepUnderflow])
            XCTAssertEqual(Double(r.points.scalars[0]), tan(1.0), accuracy: 1e-4)
            XCTAssertEqual(Double(r.points.scalars[2]), tan(1 + atan(-0.5)), accuracy: 1e-4)
            for i in [1, 3] {
                let s = r.samples[i]
                XCTAssertEqual(s.stopTime, TangentBlowUpField.blowUpTime(Double(x0[i])), accuracy: 1e-6)
                XCTAssertLessThanOrEqual(abs(s.lastStep), 1e-14 * max(1, abs(s.stopTime)))
                XCTAssertTrue(r.points.scalars[i].isFinite && r.points.scalars[i] > 1e6, "stopped near the blow-up, finite")
                XCTAssertLessThan(Int(s.steps + s.rejections), 2000, "far below max steps")
            }
            XCTAssertEqual(r.statistics.stepUnderflowSamples, 2)
            XCTAssertEqual(r.statistics.maxStepsSamples, 0)
            XCTAssertEqual(r.statistics.nonFiniteSamples, 0)
            XCTAssertFalse(r.statistics.isComplete)
            XCTAssertEqual(r.statistics.firstUnderflow?.sample, 1)
            XCTAssertEqual(r.statistics.firstUnderflow?.time ?? 0, Double.pi / 4, accuracy: 1e-6)
            let message = r.statistics.incompleteDescription
            XCTAssertTrue(message.contains("underflowed") && message.contains("sample 1 at t = 0.78539"), message)
            XCTAssertTrue(message.contains("raising max_steps does not help"), message)
            XCTAssertFalse(message.contains("raise max_steps"), message)
        }
        // Blocks: the first underflow's index counts the earlier blocks' samples.
        var total = SolverStatistics()
        total.merge(try Transport.integrate(field: field, points: Tensor(shape: [2, 1], scalars: [0, 0]), from: 0, to: 1, options: .dopri5()).statistics)
        total.merge(try Transport.integrate(field: field, points: Tensor(shape: [2, 1], scalars: [0, 3]), from: 0, to: 1, options: .dopri5()).statistics)
        XCTAssertEqual(total.stepUnderflowSamples, 1)
        XCTAssertEqual(total.firstUnderflow?.sample, 3)
        XCTAssertEqual(total.firstUnderflow?.time ?? 0, TangentBlowUpField.blowUpTime(3), accuracy: 1e-6)
    }

    func testMaxStepsAndNonFiniteAreReportedPerSample() throws {
        let field = ExponentialSineField(dimension: 1, k: 1.5)
        var o = SolverOptions.dopri5(rtol: 1e-9, atol: 1e-9)
        o.maxSteps = 8
        let r = try Transport.integrate(field: field, points: Tensor(shape: [2, 1], scalars: [1, 0]), from: 0, to: 2.5, options: o)
        XCTAssertEqual(r.samples[0].status, .maxSteps)
        // x = 0 is a fixed point: v = 0, huge steps, finishes.
        XCTAssertEqual(r.samples[1].status, .ok)
        XCTAssertEqual(r.statistics.maxStepsSamples, 1)
        XCTAssertFalse(r.statistics.incompleteDescription.isEmpty)

        // A field that overflows: dx/dt = 1e38 x blows up in float32.
        let blowUp = ExponentialSineField(dimension: 1, k: 1e38)
        let f = try Transport.integrate(field: blowUp, points: Tensor(shape: [1, 1], scalars: [1]), from: 0, to: 1,
                                        options: .fixed(.rk4, steps: 10))
        XCTAssertEqual(f.samples[0].status, .nonFinite)
        XCTAssertTrue(f.points.scalars[0].isFinite, "keeps the last finite state")
    }

    func testBadInputsThrow() {
        let field = ExponentialSineField(dimension: 2, k: 1)
        XCTAssertThrowsError(try Transport.integrate(field: field, points: Tensor(shape: [2, 3]), from: 0, to: 1, options: .dopri5()))
        XCTAssertThrowsError(try Transport.integrate(field: field, points: Tensor(shape: [1, 2], scalars: [.nan, 0]),
                                                     from: 0, to: 1, options: .dopri5()))
        XCTAssertThrowsError(try Transport.integrate(field: field, points: Tensor(shape: [1, 2]), from: 0, to: .infinity,
                                                     options: .dopri5()))
    }

    // MARK: Per-sample control: batch independence, threads

    func testSampleResultDoesNotDependOnItsBatch() throws {
        let model = try VelocityMLP(dimension: 2, hiddenWidths: [32, 32], seed: 3).makeModel()
        let probe: [Float] = [0.3, -0.7]
        var o = SolverOptions.dopri5(rtol: 1e-6, atol: 1e-6)
        o.threads = 1
        let alone = try Transport.integrate(field: model, points: Tensor(shape: [1, 2], scalars: probe), from: 0, to: 1, options: o)
        var batch = Fixtures.points(1000, dimension: 2, seed: 9, scale: 3)
        batch.scalars[2 * 517] = probe[0]; batch.scalars[2 * 517 + 1] = probe[1]
        let inside = try Transport.integrate(field: model, points: batch, from: 0, to: 1, options: o)
        for j in 0..<2 {
            XCTAssertEqual(inside.points.scalars[2 * 517 + j], alone.points.scalars[j], accuracy: 1e-6)
        }
        XCTAssertEqual(inside.samples[517].steps, alone.samples[0].steps)
        XCTAssertEqual(inside.samples[517].rejections, alone.samples[0].rejections)
    }

    /// The same with the analytic mixture velocity, whose samples need very
    /// different step counts: per-sample control gives each its own.
    func testPerSampleStepCountsDiffer() throws {
        let flow = AnalyticMixtureFlow(mixture: try Fixtures.mixture2D(), schedule: TestTrigSchedule())
        let o = SolverOptions.dopri5(rtol: 1e-6, atol: 1e-6)
        let batch = Fixtures.points(300, dimension: 2, seed: 11, scale: 2)
        let all = try Transport.integrate(field: flow, points: batch, from: 0, to: 1, options: o)
        let steps = all.samples.map(\.steps)
        XCTAssertGreaterThan(steps.max()!, steps.min()! + 2)
        let i = steps.firstIndex(of: steps.max()!)!
        let alone = try Transport.integrate(field: flow, points: Tensor(shape: [1, 2], scalars: Array(batch.scalars[2 * i..<2 * i + 2])),
                                            from: 0, to: 1, options: o)
        XCTAssertEqual(alone.samples[0], all.samples[i])
        XCTAssertEqual(alone.points.scalars, Array(all.points.scalars[2 * i..<2 * i + 2]))
    }

    func testResultsIdenticalForAnyThreadCount() throws {
        let model = try VelocityMLP(dimension: 2, hiddenWidths: [32, 32], seed: 4).makeModel()
        let x = Fixtures.points(1500, dimension: 2, seed: 10, scale: 2)
        var reference: TransportResult?
        for threads in [1, 2, 8] {
            var o = SolverOptions.dopri5(rtol: 1e-5, atol: 1e-5)
            o.threads = threads
            o.chunkSize = 256
            let r = try Transport.integrate(field: model, points: x, from: 0, to: 1, options: o)
            if let ref = reference {
                XCTAssertEqual(r.points, ref.points, "threads = \(threads)")
                XCTAssertEqual(r.samples, ref.samples)
            } else { reference = r }
        }
    }

    func testProgressReportsAndCancels() throws {
        let field = ExponentialSineField(dimension: 1, k: 1.5)
        let x = Fixtures.points(300, dimension: 1, seed: 2)
        var o = SolverOptions.dopri5(rtol: 1e-8, atol: 1e-8)
        o.chunkSize = 100
        var calls = 0, last = 0
        let full = try Transport.integrate(field: field, points: x, from: 0, to: 2.5, options: o) { done, total, _ in
            calls += 1; last = done; XCTAssertEqual(total, 300); return true
        }
        XCTAssertGreaterThan(calls, 1)
        XCTAssertEqual(last, 300)
        let plain = try Transport.integrate(field: field, points: x, from: 0, to: 2.5, options: o)
        XCTAssertEqual(full.points, plain.points, "progress rounds must not change results")
        XCTAssertThrowsError(try Transport.integrate(field: field, points: x, from: 0, to: 2.5, options: o) { _, _, _ in false }) {
            XCTAssertEqual(($0 as? FlowError).map { if case .cancelled = $0 { return true } else { return false } }, true)
        }
    }

    // MARK: Against the analytic mixture flow

    func testForwardThenBackwardReturnsTheStart() throws {
        let flow = AnalyticMixtureFlow(mixture: try Fixtures.mixture2D(), schedule: TestTrigSchedule())
        let x0 = Fixtures.points(200, dimension: 2, seed: 5)
        let o = SolverOptions.dopri5(rtol: 1e-7, atol: 1e-7)
        let there = try Transport.integrate(field: flow, points: x0, from: 0, to: 1, options: o)
        let back = try Transport.integrate(field: flow, points: there.points, from: 1, to: 0, options: o)
        XCTAssertLessThan(back.points.maxAbsDifference(x0), 1e-4)
    }

    /// Pushing N(0, I) samples through the exact velocity gives the mixture:
    /// mean and covariance within 4 standard errors of the sample moments
    /// (n = 2000: se(mean) ≈ σ/√n ≈ 0.04).
    func testPushedSamplesMatchMixtureMoments() throws {
        let mixture = try Fixtures.mixture2D()
        for schedule in [TestTrigSchedule() as any Schedule, TestLinearSchedule()] {
            let flow = AnalyticMixtureFlow(mixture: mixture, schedule: schedule)
            let n = 2000
            let x0 = StandardNormal(dimension: 2).samples(count: n, seed: 1)
            let r = try Transport.integrate(field: flow, points: x0, from: 0, to: 1, options: .dopri5(rtol: 1e-5, atol: 1e-5))
            XCTAssertTrue(r.statistics.isComplete)
            let m = mixture.mean, c = mixture.covariance
            for j in 0..<2 {
                let xs = (0..<n).map { Double(r.points.scalars[$0 * 2 + j]) }
                let mean = xs.reduce(0, +) / Double(n)
                let variance = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
                XCTAssertEqual(mean, m[j], accuracy: 4 * (c[j * 2 + j] / Double(n)).squareRoot(), schedule.name)
                // se(variance) ≈ σ² √(2/n) for near-normal tails; mixtures are wider: 6σ²/√n.
                XCTAssertEqual(variance, c[j * 2 + j], accuracy: 6 * c[j * 2 + j] / Double(n).squareRoot(), schedule.name)
            }
        }
    }
}
