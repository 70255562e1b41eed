import XCTest
@testable import FlowRuntime

final class PathLengthTests: XCTestCase {
    /// Kinetic energy of the interpolant between N(0, 1) and N(μ, σ²) in 1-D
    /// by midpoint quadrature: its marginals are N(m, s²) with m = βμ,
    /// s² = α² + β²σ², whose velocity m' + (s'/s)(x − m) has
    /// E|v|² = m'² + s'² (s' = (αα' + ββ'σ²)/s).
    static func gaussianPathEnergy(_ schedule: any Schedule, mu: Double, sigma: Double, points: Int = 4000) -> Double {
        var e = 0.0
        for i in 0..<points {
            let c = schedule.coefficients(at: (Double(i) + 0.5) / Double(points))
            let s = (c.alpha * c.alpha + c.beta * c.beta * sigma * sigma).squareRoot()
            let ds = (c.alpha * c.alphaDot + c.beta * c.betaDot * sigma * sigma) / s
            e += c.betaDot * mu * c.betaDot * mu + ds * ds
        }
        return e / Double(points)
    }

    func optimizer(mu: Double, sigma: Double, terms: Int, warmup: Int, seed: UInt64 = 1) throws -> PathLengthOptimizer {
        let net = try VelocityMLP(dimension: 1, hiddenWidths: [64, 64], seed: seed).makeGraph()
        let target = try DiagonalNormal(mean: [mu], standardDeviation: [sigma])
        return try PathLengthOptimizer(
            graph: net, data: .source(target, heldOut: 0), schedule: FourierSchedule(terms: terms),
            trainerConfiguration: TrainerConfiguration(batchSize: 256, learningRate: LearningRateSchedule(learningRate: 5e-3),
                                                       emaDecay: 0, seed: seed, threads: 2, chunkSize: 128),
            configuration: PathLengthConfiguration(learningRate: 0.003, warmupSteps: warmup, networkStepsPerUpdate: 4, batchSize: 2048))
    }

    /// The ascent direction equals central differences of G on the same
    /// batch at the same network (h = 1e-3; tolerance 2% + 2e-3, above the
    /// Float rounding of G divided by h).
    func testScheduleGradientMatchesFiniteDifferences() throws {
        let opt = try optimizer(mu: 2, sigma: 0.7, terms: 3, warmup: 0)
        try opt.trainer.fit(steps: 50)
        opt.schedule = try FourierSchedule(alphaCoefficients: [0.1, -0.05, 0.02], betaCoefficients: [0.05, 0.03, -0.01])
        let center = opt.schedule
        let (gradient, _, _) = try opt.scheduleGradient()
        let h = 1e-3
        for p in 0..<6 {
            var a = center.alphaCoefficients, b = center.betaCoefficients
            func g(_ delta: Double) throws -> Double {
                var aa = a, bb = b
                if p < 3 { aa[p] += delta } else { bb[p - 3] += delta }
                opt.schedule = try FourierSchedule(alphaCoefficients: aa, betaCoefficients: bb)
                return try opt.scheduleGradient().quadratic
            }
            let fd = (try g(h) - g(-h)) / (2 * h)
            a = center.alphaCoefficients; b = center.betaCoefficients
            XCTAssertEqual(gradient[p], fd, accuracy: 0.02 * abs(fd) + 2e-3, "coefficient \(p)")
        }
        opt.schedule = center
    }

    /// N(0, 1) → N(2, 1): W2² = 4. The trig path costs π²/8 · 4 ≈ 4.93 and
    /// the linear start 4.43; two Fourier terms can reach 4.07 (four: 4.04).
    /// After 300 warmup updates and 200 alternations (4 network updates per
    /// schedule update) the learned schedule's exact kinetic energy (closed
    /// form above) is within 5% of W2² and below 0.9× trig's, and the
    /// network's kinetic-energy estimate averaged over the last 50 schedule
    /// steps is within 10% of the learned path's exact energy.
    func testOptimisedPathApproachesW2() throws {
        let mu = 2.0, sigma = 1.0, w2 = mu * mu + (sigma - 1) * (sigma - 1)
        let opt = try optimizer(mu: mu, sigma: sigma, terms: 2, warmup: 300)
        var estimates: [Double] = []
        try opt.fit(steps: 500) { r in
            if let e = r.kineticEnergy { estimates.append(e) }
            return true
        }
        let learned = Self.gaussianPathEnergy(opt.schedule, mu: mu, sigma: sigma)
        let trig = Self.gaussianPathEnergy(TrigSchedule(), mu: mu, sigma: sigma)
        let linear = Self.gaussianPathEnergy(LinearSchedule(), mu: mu, sigma: sigma)
        let recent = estimates.suffix(50).reduce(0, +) / 50
        print("path length: W2² \(w2), trig \(trig), linear \(linear), learned \(learned), network estimate \(recent), schedule \(opt.schedule)")
        XCTAssertEqual(trig, Double.pi * Double.pi / 8 * w2, accuracy: 1e-3)
        XCTAssertLessThan(learned, 1.05 * w2)
        XCTAssertGreaterThanOrEqual(learned, w2 * (1 - 1e-6), "no path beats W2²")
        XCTAssertLessThan(learned, 0.9 * trig)
        XCTAssertEqual(recent, learned, accuracy: 0.1 * learned)
    }

    /// `PathLength.kineticEnergy` with the exact velocity (a one-component
    /// mixture) agrees with the closed form within 4 standard errors.
    func testKineticEnergyEstimate() throws {
        let target = try GaussianMixture(weights: [1], means: [[2]], covariances: [[0.49]])
        for schedule in [TrigSchedule() as any Schedule, LinearSchedule()] {
            let field = AnalyticMixtureFlow(mixture: target, schedule: schedule)
            let e = try PathLength.kineticEnergy(field: field, schedule: schedule, base: StandardNormal(dimension: 1),
                                                 data: target, count: 20000, seed: 4)
            let exact = Self.gaussianPathEnergy(schedule, mu: 2, sigma: 0.7)
            XCTAssertEqual(e.mean, exact, accuracy: 4 * e.standardError, schedule.name)
        }
    }

    /// With the exact velocity the ascent direction is the envelope-theorem
    /// gradient −∂KE/∂θ of the closed-form path energy (central differences,
    /// h = 1e-4), within Monte Carlo error (80,000 samples; the noise of
    /// term k grows like kπ: tolerance 0.25 k + 3%).
    func testAscentDirectionIsTheEnvelopeGradient() throws {
        let opt = try optimizer(mu: 2, sigma: 1, terms: 3, warmup: 0)
        let target = try GaussianMixture(weights: [1], means: [[2]], covariances: [[1]])
        let schedule = try FourierSchedule(alphaCoefficients: [0.1, -0.05, 0.02], betaCoefficients: [0.05, 0.03, -0.01])
        opt.schedule = schedule
        let g = try PathLengthOptimizer(
            graph: opt.trainer.graph, data: .source(DiagonalNormal(mean: [2], standardDeviation: [1]), heldOut: 0), schedule: schedule,
            trainerConfiguration: TrainerConfiguration(batchSize: 1024, seed: 2, threads: 2),
            configuration: PathLengthConfiguration(batchSize: 80000)
        ).scheduleGradient(field: AnalyticMixtureFlow(mixture: target, schedule: schedule))
        for p in 0..<6 {
            var a = schedule.alphaCoefficients, b = schedule.betaCoefficients
            func energy(_ delta: Double) throws -> Double {
                var aa = a, bb = b
                if p < 3 { aa[p] += delta } else { bb[p - 3] += delta }
                return Self.gaussianPathEnergy(try FourierSchedule(alphaCoefficients: aa, betaCoefficients: bb), mu: 2, sigma: 1)
            }
            let fd = -(try energy(1e-4) - energy(-1e-4)) / 2e-4
            a = schedule.alphaCoefficients; b = schedule.betaCoefficients
            XCTAssertEqual(g.gradient[p], fd, accuracy: 0.25 * Double(p % 3 + 1) + 0.03 * abs(fd), "coefficient \(p)")
        }
        XCTAssertEqual(g.kineticEnergy, Self.gaussianPathEnergy(schedule, mu: 2, sigma: 1), accuracy: 0.1)
    }

    /// `PathLength.flowKineticEnergy` (RK4 trajectories of the exact
    /// velocity, 20 steps) agrees with the closed form within 4 standard
    /// errors + 0.01 (quadrature).
    func testFlowKineticEnergyOfExactVelocity() throws {
        let target = try GaussianMixture(weights: [1], means: [[2]], covariances: [[0.49]])
        for schedule in [TrigSchedule() as any Schedule, LinearSchedule()] {
            let e = try PathLength.flowKineticEnergy(field: AnalyticMixtureFlow(mixture: target, schedule: schedule),
                                                     base: StandardNormal(dimension: 1), count: 1500, seed: 1, steps: 20)
            XCTAssertEqual(e.mean, Self.gaussianPathEnergy(schedule, mu: 2, sigma: 0.7), accuracy: 4 * e.standardError + 0.01, schedule.name)
        }
    }

    func testValidation() throws {
        let net = try VelocityMLP(dimension: 1, hiddenWidths: [8]).makeGraph()
        XCTAssertThrowsError(try PathLengthOptimizer(graph: net, data: .samples([1, 2, 3]), schedule: FourierSchedule(terms: 0)))
        XCTAssertThrowsError(try PathLengthOptimizer(graph: net, data: .samples([1, 2, 3]), schedule: FourierSchedule(terms: 2),
                                                     configuration: PathLengthConfiguration(learningRate: -1)))
        XCTAssertThrowsError(try PathLengthOptimizer(graph: net, data: .stream({ _, _ in }, heldOut: []), schedule: FourierSchedule(terms: 2)))
    }
}

/// A flow trained with a learned Fourier schedule is a complete flow on disk
/// (issue 16 item 5): the coefficients are in its metadata and it loads back
/// with the same schedule, samples and log-densities.
final class PathLengthFlowTests: XCTestCase {
    /// N(0, 1) → N(2, 0.7²) with 2 terms: after the alternation the learned
    /// path's exact kinetic energy (closed form) is below the linear and trig
    /// paths'; the saved and reloaded flow has bit-identical coefficients,
    /// the same samples (bitwise) and log-densities within 1e-5.
    func testOptimisedFlowSavesAndReloads() throws {
        let mu = 2.0, sigma = 0.7
        let net = try VelocityMLP(dimension: 1, hiddenWidths: [32, 32], seed: 3).makeGraph()
        let optimizer = try PathLengthOptimizer(
            graph: net, data: .source(DiagonalNormal(mean: [mu], standardDeviation: [sigma]), heldOut: 0),
            schedule: FourierSchedule(terms: 2),
            trainerConfiguration: TrainerConfiguration(batchSize: 256, learningRate: LearningRateSchedule(learningRate: 5e-3),
                                                       emaDecay: 0, seed: 3, threads: 2, chunkSize: 128),
            configuration: PathLengthConfiguration(learningRate: 0.003, warmupSteps: 200, networkStepsPerUpdate: 4, batchSize: 2048))
        try optimizer.fit(steps: 350)
        let learned = optimizer.schedule
        XCTAssertNotEqual(learned, FourierSchedule(terms: 2), "the schedule moved")
        let energy = PathLengthTests.gaussianPathEnergy(learned, mu: mu, sigma: sigma)
        XCTAssertLessThan(energy, PathLengthTests.gaussianPathEnergy(LinearSchedule(), mu: mu, sigma: sigma))
        XCTAssertLessThan(energy, PathLengthTests.gaussianPathEnergy(TrigSchedule(), mu: mu, sigma: sigma))

        let flow = try optimizer.trainer.flow()
        XCTAssertEqual(flow.schedule as? FourierSchedule, learned)
        let path = NSTemporaryDirectory() + "fourier-flow-\(getpid()).onnx"
        defer { unlink(path) }
        try flow.saveONNX(path: path)
        let model = try Model.loadONNX(path: path)
        XCTAssertEqual(model.metadata[ScheduleMetadata.interpolantKey], "fourier")
        let loaded = try Flow(model: model)
        XCTAssertEqual(loaded.schedule as? FourierSchedule, learned, "coefficients round-trip bit for bit")

        let points = Tensor(shape: [64, 1], scalars: (0..<64).map { Float(-1 + 4 * Double($0) / 63) })
        let before = try flow.logDensity(points: points), after = try loaded.logDensity(points: points)
        for i in 0..<64 { XCTAssertEqual(after.logDensities[i], before.logDensities[i], accuracy: 1e-5) }
        let s0 = try flow.sample(count: 32, seed: 9), s1 = try loaded.sample(count: 32, seed: 9)
        XCTAssertEqual(s0.points.scalars, s1.points.scalars)
        // The score uses the schedule: it must be the learned one after loading.
        let t = [Double](repeating: 0.4, count: 64)
        XCTAssertEqual(try loaded.score(times: t, points: points).scalars, try flow.score(times: t, points: points).scalars)
    }

    /// Malformed Fourier metadata is `.invalidModel` naming the key.
    func testMalformedCoefficientsAreNamed() throws {
        let model = try Model(graph: VelocityMLP(dimension: 1, hiddenWidths: [4]).makeGraph())
        let cases: [([String: String], String)] = [
            (["flowrt.interpolant": "fourier"], "flowrt.fourier.alpha"),
            (["flowrt.interpolant": "fourier", "flowrt.fourier.alpha": "0.1,x", "flowrt.fourier.beta": "0,0"], "flowrt.fourier.alpha"),
            (["flowrt.interpolant": "fourier", "flowrt.fourier.alpha": "0.1", "flowrt.fourier.beta": "nan"], "flowrt.fourier.beta"),
            (["flowrt.interpolant": "fourier", "flowrt.fourier.alpha": "0.1,0.2", "flowrt.fourier.beta": "0.3"], "flowrt.fourier.beta"),
            (["flowrt.interpolant": "fourier", "flowrt.fourier.alpha": "0.1", "flowrt.fourier.beta": "1e999"], "flowrt.fourier.beta"),
            (["flowrt.interpolant": "sigmoid"], "flowrt.interpolant"),
        ]
        for (meta, key) in cases {
            XCTAssertThrowsError(try Flow(model: model.withMetadata(meta))) { error in
                guard case FlowError.invalidModel(let m) = error else { return XCTFail("\(meta): \(error)") }
                XCTAssertTrue(m.contains(key), "\(meta): \(m)")
            }
        }
        // Spaces around numbers are accepted; K = 0 ("") is the linear schedule.
        let spaced = try Flow(model: model.withMetadata(["flowrt.interpolant": "fourier", "flowrt.fourier.alpha": " 0.5 , -0.25",
                                                         "flowrt.fourier.beta": "0.125,0"]))
        XCTAssertEqual(spaced.schedule as? FourierSchedule,
                       try FourierSchedule(alphaCoefficients: [0.5, -0.25], betaCoefficients: [0.125, 0]))
        let empty = try Flow(model: model.withMetadata(["flowrt.interpolant": "fourier", "flowrt.fourier.alpha": "", "flowrt.fourier.beta": ""]))
        XCTAssertEqual((empty.schedule as? FourierSchedule)?.terms, 0)
    }

    /// A flow with another schedule drops coefficient entries a loaded model carried.
    func testOtherSchedulesDropStaleCoefficients() throws {
        let model = try Model(graph: VelocityMLP(dimension: 1, hiddenWidths: [4]).makeGraph())
            .withMetadata(["flowrt.interpolant": "fourier", "flowrt.fourier.alpha": "0.1", "flowrt.fourier.beta": "0.2"])
        let exported = try Flow(field: model, schedule: TrigSchedule()).modelForExport()
        XCTAssertEqual(exported.metadata["flowrt.interpolant"], "trig")
        XCTAssertNil(exported.metadata["flowrt.fourier.alpha"])
        XCTAssertNil(exported.metadata["flowrt.fourier.beta"])
    }
}
