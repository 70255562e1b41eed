import XCTest
@testable import FlowRuntime

final class CallbackDensityTests: XCTestCase {
    /// A host density that forwards to a native one through the closures.
    static func wrapping(_ native: DiagonalNormal) throws -> CallbackDensity {
        try CallbackDensity(dimension: native.dimension, sample: { seed, first, out in
            native.sample(seed: seed, firstIndex: first, into: out)
        }, logDensity: { points, out in
            native.logDensity(points: points, into: out)
        })
    }

    /// A flow whose base is given by closures samples, evaluates
    /// log-densities and trains bit-identically to the same flow with the
    /// native base (the reference): the closures are really used, and used
    /// the way the native density is.
    func testHostBaseMatchesNativeBase() throws {
        let native = try DiagonalNormal(mean: [0.5, -0.25], standardDeviation: [1.2, 0.8])
        let host = try Self.wrapping(native)
        XCTAssertTrue(host.hasLogDensity)
        let model = try VelocityMLP(dimension: 2, hiddenWidths: [16, 16], seed: 3).makeModel()
        let a = try Flow(field: model, base: native), b = try Flow(field: model, base: host)
        let sa = try a.sample(count: 50, seed: 8, solver: .fixed(.rk4, steps: 8), logDensity: .exact)
        let sb = try b.sample(count: 50, seed: 8, solver: .fixed(.rk4, steps: 8), logDensity: .exact)
        XCTAssertEqual(sa.points, sb.points)
        XCTAssertEqual(sa.logDensities, sb.logDensities)
        let la = try a.logDensity(points: sa.points, solver: .fixed(.rk4, steps: 8))
        let lb = try b.logDensity(points: sa.points, solver: .fixed(.rk4, steps: 8))
        XCTAssertEqual(la.logDensities, lb.logDensities)

        let data = EightGaussians().samples(count: 512, seed: 1).scalars
        let config = TrainerConfiguration(batchSize: 64, emaDecay: 0, seed: 5, threads: 2, chunkSize: 16)
        let ta = try Trainer(graph: model.graph, data: .samples(data), base: native, configuration: config)
        let tb = try Trainer(graph: model.graph, data: .samples(data), base: host, configuration: config)
        try ta.fit(steps: 5); try tb.fit(steps: 5)
        XCTAssertEqual(ta.rawParameters.map(\.tensor), tb.rawParameters.map(\.tensor))
    }

    /// Without a log-density the host density samples but evaluates to NaN,
    /// and the likelihood reports it rather than inventing a value.
    func testSampleOnlyHostDensity() throws {
        let host = try CallbackDensity(dimension: 2, sample: { seed, first, out in
            StandardNormal(dimension: 2).sample(seed: seed, firstIndex: first, into: out)
        })
        XCTAssertFalse(host.hasLogDensity)
        XCTAssertTrue(host.logDensity(of: Tensor(shape: [3, 2])).allSatisfy(\.isNaN))
        XCTAssertEqual(host.samples(count: 4, seed: 2), StandardNormal(dimension: 2).samples(count: 4, seed: 2))
        XCTAssertThrowsError(try CallbackDensity(dimension: 0, sample: { _, _, _ in }))
    }

    /// Data-to-data transport between two empirical 2-D sets (8 gaussians as
    /// the base, two moons as the target; 2000 training rows each, trig
    /// interpolant). Fresh samples of each set transported to the other side
    /// match fresh samples there: energy distance below 10% of the distance
    /// between the untransported sets (≈ 0.31) and below 0.03 (≈ 7δ/n with
    /// δ = E|X − X'| ≈ 2.5 at n = 600; measured 0.0045 and 0.0082).
    func testDataToDataTransportBothWays() throws {
        let n = 2000
        let a = EightGaussians(), b = TwoMoons()
        let base = try EmpiricalDensity(points: a.samples(count: n, seed: 11).scalars, dimension: 2)
        let graph = try VelocityMLP(dimension: 2, hiddenWidths: [64, 64], seed: 2).makeGraph()
        let trainer = try Trainer(graph: graph, data: .samples(b.samples(count: n, seed: 12).scalars), base: base,
                                  configuration: TrainerConfiguration(batchSize: 256, learningRate: LearningRateSchedule(learningRate: 3e-3),
                                                                      emaDecay: 0.99, seed: 3, threads: 2, chunkSize: 128))
        try trainer.fit(steps: 1500)
        let model = try trainer.model()
        let m = 600
        let freshA = a.samples(count: m, seed: 21), freshB = b.samples(count: m, seed: 22)
        let forward = try Transport.integrate(field: model, points: freshA, from: 0, to: 1, options: .dopri5(rtol: 1e-4, atol: 1e-4))
        let backward = try Transport.integrate(field: model, points: freshB, from: 1, to: 0, options: .dopri5(rtol: 1e-4, atol: 1e-4))
        let before = SampleStatisticsReference.energyDistance(freshA, freshB).distance
        let otherB = b.samples(count: m, seed: 23), otherA = a.samples(count: m, seed: 24)
        let toB = SampleStatisticsReference.energyDistance(forward.points, otherB).distance
        let toA = SampleStatisticsReference.energyDistance(backward.points, otherA).distance
        print("data-to-data: untransported \(before), A→B \(toB), B→A \(toA)")
        for e in [toB, toA] {
            XCTAssertLessThan(e, 0.1 * before)
            XCTAssertLessThan(e, 0.03)
        }
    }
}
