import XCTest
@testable import FlowRuntime

final class SDETests: XCTestCase {
    static let n = 1500

    func sampler(_ mixture: GaussianMixture, epsilon: Double, method: SDEOptions.Method = .heun,
                 steps: Int = 100, schedule: any Schedule = TrigSchedule()) throws -> SDESampler {
        let field = AnalyticMixtureFlow(mixture: mixture, schedule: schedule)
        return try SDESampler(score: ScoreField(field: field, schedule: schedule),
                              options: SDEOptions(method: method, steps: steps, diffusion: .constant(epsilon)))
    }

    /// SDE samples driven by the exact mixture velocity have the mixture's
    /// law, for ε0 ∈ {0.5, 2} (Heun, 200 steps) and Euler–Maruyama (ε0 = 1):
    /// - means within 5 standard errors √(C_rr/n) + 0.03 (discretisation
    ///   bias), covariances within 5 standard errors √((C_rr C_ss + C_rs²)/n)
    ///   (the Gaussian formula; ≈ 0.35 at n = 1000);
    /// - energy distance to n = 1000 exact samples below 8δ/n (δ = E|X − X'|
    ///   ≈ 2.65, so ≈ 0.021). Under equal laws Ê has mean 0 and a spread of
    ///   order δ/n, with a heavy upper tail here because the component
    ///   counts of two samples differ (measured: up to ≈ 4.5δ/n); the test
    ///   checks that 4 pairs of independent exact sets stay below the bound,
    ///   and that a mixture with means shifted by 0.25 (Ê ≈ 26δ/n) exceeds
    ///   it: the test has power.
    func testSDESamplesMatchTheMixture() throws {
        let mixture = try Fixtures.mixture2D()
        let n = 1000
        let exact = mixture.samples(count: n, seed: 777)
        let spread = SampleStatisticsReference.energyDistance(exact, exact).spread
        let bound = 8 * spread / Double(n)
        for seed in 900..<904 as Range<UInt64> {
            let null = SampleStatisticsReference.energyDistance(mixture.samples(count: n, seed: seed), exact).distance
            XCTAssertLessThan(null, bound, "two exact sample sets (seed \(seed))")
        }
        let shifted = try GaussianMixture(weights: mixture.weights, means: mixture.means.map { $0.map { $0 + 0.25 } },
                                          covariances: mixture.covariances).samples(count: n, seed: 778)
        let control = SampleStatisticsReference.energyDistance(shifted, exact).distance
        XCTAssertGreaterThan(control, bound, "shifted mixture: the statistic must detect a 0.25 shift")
        let (trueMean, trueCov) = (mixture.mean, mixture.covariance)
        for (epsilon, method) in [(0.5, SDEOptions.Method.heun), (2, .heun), (1, .eulerMaruyama)] {
            let r = try sampler(mixture, epsilon: epsilon, method: method, steps: 200).sample(count: n, seed: 42)
            XCTAssertTrue(r.nonFiniteSamples.isEmpty)
            let (mean, cov) = SampleStatisticsReference.moments(r.points)
            for k in 0..<2 {
                XCTAssertEqual(mean[k], trueMean[k], accuracy: 5 * (trueCov[k * 3] / Double(n)).squareRoot() + 0.03, "ε0=\(epsilon) \(method)")
            }
            for r in 0..<2 { for c in 0..<2 {
                let se = ((trueCov[r * 3] * trueCov[c * 3] + trueCov[r * 2 + c] * trueCov[r * 2 + c]) / Double(n)).squareRoot()
                XCTAssertEqual(cov[r * 2 + c], trueCov[r * 2 + c], accuracy: 5 * se, "ε0=\(epsilon) \(method)")
            } }
            let e = SampleStatisticsReference.energyDistance(r.points, exact).distance
            XCTAssertLessThan(e, bound, "ε0=\(epsilon) \(method): energy distance \(e), bound \(bound) (shifted control \(control))")
            print("SDE ε0=\(epsilon) \(method): energy distance \(e), bound \(bound), shifted control \(control)")
        }
    }

    /// The diffusion really acts: with ε0 = 2 the end points differ from the
    /// ODE's (ε0 = 0) from the same base points, and ε0 = 0 reproduces a
    /// fixed-step Heun ODE solve exactly (same grid, same arithmetic order
    /// up to Float rounding: 1e-5).
    func testZeroDiffusionIsTheODE() throws {
        let mixture = try Fixtures.mixture2D()
        let ode = try sampler(mixture, epsilon: 0, steps: 50).sample(count: 64, seed: 1)
        let sde = try sampler(mixture, epsilon: 2, steps: 50).sample(count: 64, seed: 1)
        let x0 = StandardNormal(dimension: 2).samples(count: 64, seed: 1)
        let heun = try Transport.integrate(field: AnalyticMixtureFlow(mixture: mixture, schedule: TrigSchedule()),
                                           points: x0, from: 0, to: 1, options: .fixed(.heun, steps: 50))
        XCTAssertLessThan(ode.points.maxAbsDifference(heun.points), 1e-4)
        XCTAssertGreaterThan(sde.points.maxAbsDifference(ode.points), 0.1)
        XCTAssertEqual(ode.evaluationsPerSample, 2 * 49 + 2)
    }

    /// Bit-identical results for any thread count and chunk size, and a
    /// sub-run (firstIndex 5, 10 rows) equals the same rows of a full run.
    func testReproducibleAcrossThreadsAndSplits() throws {
        let mixture = try Fixtures.mixture2D()
        let field = AnalyticMixtureFlow(mixture: mixture, schedule: TrigSchedule())
        let score = try ScoreField(field: field, schedule: TrigSchedule())
        var a = SDEOptions(steps: 20, diffusion: .constant(1)); a.threads = 1; a.chunkSize = 64
        var b = a; b.threads = 2; b.chunkSize = 7
        let ra = try SDESampler(score: score, options: a).sample(count: 30, seed: 9)
        let rb = try SDESampler(score: score, options: b).sample(count: 30, seed: 9)
        XCTAssertEqual(ra.points, rb.points)
        let part = try SDESampler(score: score, options: b).sample(count: 10, seed: 9, firstIndex: 5)
        XCTAssertEqual(part.points.scalars, Array(ra.points.scalars[10..<30]))
        let other = try SDESampler(score: score, options: a).sample(count: 30, seed: 10)
        XCTAssertNotEqual(other.points, ra.points)
    }

    /// A custom ε(t) is used (ε ≡ 0 gives the ODE), and bad options are refused.
    func testCustomDiffusionAndValidation() throws {
        let mixture = try Fixtures.mixture2D()
        let field = AnalyticMixtureFlow(mixture: mixture, schedule: TrigSchedule())
        let score = try ScoreField(field: field, schedule: TrigSchedule())
        let zero = try SDESampler(score: score, options: SDEOptions(steps: 10, diffusion: .custom { _ in 0 })).sample(count: 8, seed: 3)
        let ode = try SDESampler(score: score, options: SDEOptions(steps: 10, diffusion: .constant(0))).sample(count: 8, seed: 3)
        XCTAssertEqual(zero.points, ode.points)
        XCTAssertThrowsError(try SDESampler(score: score, options: SDEOptions(steps: 0)))
        XCTAssertThrowsError(try SDESampler(score: score, options: SDEOptions(diffusion: .constant(-1))))
        XCTAssertThrowsError(try SDESampler(score: score, options: SDEOptions(steps: 4, diffusion: .custom { _ in -1 })).sample(count: 2, seed: 0))
        XCTAssertThrowsError(try SDESampler(score: score, options: SDEOptions(steps: 4, diffusion: .custom { _ in .nan })).sample(count: 2, seed: 0))
        XCTAssertThrowsError(try SDESampler(score: score).sample(count: -1, seed: 0))
    }
}
