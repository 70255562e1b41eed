import XCTest
@testable import FlowRuntime

final class FlowTests: XCTestCase {
    func makeFlow() throws -> (Flow, GaussianMixture) {
        let mixture = try Fixtures.mixture2D()
        let field = AnalyticMixtureFlow(mixture: mixture, schedule: TestTrigSchedule())
        return (try Flow(field: field, schedule: TestTrigSchedule()), mixture)
    }

    /// Samples with log ρ1 in one pass: the log-densities match the mixture's
    /// closed form at the returned points (1e-4 nats, dopri5 rtol 1e-6), and
    /// are the same samples as without log-densities (same seed).
    func testSampleWithLogDensity() throws {
        let (flow, mixture) = try makeFlow()
        let o = SolverOptions.dopri5(rtol: 1e-6, atol: 1e-6)
        let s = try flow.sample(count: 100, seed: 42, solver: o, logDensity: .exact)
        let exact = mixture.logDensity(of: s.points)
        for i in 0..<100 { XCTAssertEqual(s.logDensities![i], exact[i], accuracy: 1e-4) }
        let plain = try flow.sample(count: 100, seed: 42, solver: o)
        XCTAssertNil(plain.logDensities)
        XCTAssertLessThan(plain.points.maxAbsDifference(s.points), 1e-4)
        // Split-independent: samples 50..<100 drawn with firstIndex 50.
        let tail = try flow.sample(count: 50, seed: 42, solver: o, firstIndex: 50)
        XCTAssertEqual(tail.points.scalars, Array(plain.points.scalars[100...]))
    }

    /// Encoding is the backward transport; log ρ1 via the flow equals the
    /// mixture, and encode ∘ sample recovers the base samples.
    func testEncodeAndLogDensity() throws {
        let (flow, mixture) = try makeFlow()
        let o = SolverOptions.dopri5(rtol: 1e-7, atol: 1e-7)
        let x = mixture.samples(count: 80, seed: 3)
        let lp = try flow.logDensity(points: x, time: 1, method: .exact, solver: o)
        let exact = mixture.logDensity(of: x)
        for i in 0..<80 { XCTAssertEqual(lp.logDensities[i], exact[i], accuracy: 1e-4) }
        let z = try flow.encode(points: x, solver: o)
        XCTAssertLessThan(z.points.maxAbsDifference(lp.basePoints), 1e-4)
        let back = try flow.transport(points: z.points, from: 0, to: 1, solver: o)
        XCTAssertLessThan(back.points.maxAbsDifference(x), 1e-4)
    }

    func testFlowRejectsBadArguments() throws {
        let (flow, _) = try makeFlow()
        XCTAssertThrowsError(try flow.sample(count: -1, seed: 1))
        XCTAssertThrowsError(try flow.transport(points: Tensor(shape: [1, 2]), from: 0, to: 1.5))
        XCTAssertThrowsError(try Flow(field: flow.field, base: StandardNormal(dimension: 3)))
    }

    /// A flow is used from many threads at once: same results as serially.
    func testConcurrentUse() throws {
        let model = try VelocityMLP(dimension: 2, hiddenWidths: [16, 16], seed: 5).makeModel()
        let flow = try Flow(field: model)
        var o = SolverOptions.fixed(.rk4, steps: 20)
        o.threads = 1
        let serial = try (0..<4).map { try flow.sample(count: 64, seed: UInt64($0), solver: o).points }
        var results = [Tensor?](repeating: nil, count: 4)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            let r = try? flow.sample(count: 64, seed: UInt64(i), solver: o).points
            lock.lock(); results[i] = r; lock.unlock()
        }
        XCTAssertEqual(results.map { $0! }, serial)
    }
}
