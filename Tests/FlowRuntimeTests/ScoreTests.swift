import XCTest
@testable import FlowRuntime

/// Independent references for the score of the Gaussian-mixture interpolant:
/// ρ_t = Σ_j p_j N(β μ_j, α² I + β² C_j) (2-D), differentiated by hand.
enum MixtureScoreReference {
    /// ∇ log ρ_t(x) = Σ_j w_j(x) · (−C̃_j⁻¹ (x − β μ_j)), C̃_j = α² I + β² C_j (d = 2).
    static func score(_ mixture: GaussianMixture, alpha a: Double, beta b: Double, x: [Double]) -> [Double] {
        var logTerms: [Double] = [], grads: [[Double]] = []
        for j in 0..<mixture.weights.count {
            let c = mixture.covariances[j], mu = mixture.means[j]
            let c00 = a * a + b * b * c[0], c01 = b * b * c[1], c11 = a * a + b * b * c[3]
            let det = c00 * c11 - c01 * c01
            let r0 = x[0] - b * mu[0], r1 = x[1] - b * mu[1]
            let g0 = -(c11 * r0 - c01 * r1) / det, g1 = -(-c01 * r0 + c00 * r1) / det
            let quad = -(r0 * g0 + r1 * g1)
            logTerms.append(log(mixture.weights[j]) - 0.5 * log(det) - 0.5 * quad)
            grads.append([g0, g1])
        }
        let top = logTerms.max()!
        let w = logTerms.map { exp($0 - top) }, total = w.reduce(0, +)
        return (0..<2).map { r in (0..<w.count).reduce(0) { $0 + w[$1] / total * grads[$1][r] } }
    }

    /// Central differences (step h) of log ρ_t from `GaussianMixture` at the
    /// transformed parameters.
    static func finiteDifferenceScore(_ mixture: GaussianMixture, alpha a: Double, beta b: Double,
                                      x: [Double], h: Double = 1e-2) throws -> [Double] {
        let rt = try GaussianMixture(
            weights: mixture.weights, means: mixture.means.map { $0.map { b * $0 } },
            covariances: mixture.covariances.map { c in c.enumerated().map { ($0.offset % 3 == 0 ? a * a : 0) + b * b * $0.element } })
        return (0..<2).map { r in
            var p = x, m = x
            p[r] += h; m[r] -= h
            let lp = rt.logDensity(of: Tensor(shape: [1, 2], scalars: p.map(Float.init)))[0]
            let lm = rt.logDensity(of: Tensor(shape: [1, 2], scalars: m.map(Float.init)))[0]
            return (lp - lm) / (2 * h)
        }
    }
}

/// The interpolant between a diagonal Gaussian base N(μ0, diag σ0²) and a
/// mixture, built from the standard-normal oracle: with y = (x − α μ0)/σ0,
/// y_t interpolates N(0, I) and the mixture scaled by 1/σ0, so
/// v(t, x) = α' μ0 + σ0 ⊙ v'(t, y) and s(x) = s'(y) / σ0.
struct ShiftedBaseMixtureField: VelocityField {
    let inner: AnalyticMixtureFlow
    let mean: [Double], sd: [Double]
    var dimension: Int { inner.dimension }
    func makeWorkspace() -> FieldWorkspace { FieldWorkspace() }
    func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                  into velocities: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        let d = dimension
        var y = [Float](repeating: 0, count: points.count)
        for i in 0..<times.count {
            let c = inner.schedule.coefficients(at: times[i])
            for j in 0..<d { y[i * d + j] = Float((Double(points[i * d + j]) - c.alpha * mean[j]) / sd[j]) }
        }
        y.withUnsafeBufferPointer { inner.velocity(times: times, points: $0, into: velocities, workspace: workspace) }
        for i in 0..<times.count {
            let c = inner.schedule.coefficients(at: times[i])
            for j in 0..<d { velocities[i * d + j] = Float(c.alphaDot * mean[j] + sd[j] * Double(velocities[i * d + j])) }
        }
    }
    func velocityJVP(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                     tangents: UnsafeBufferPointer<Float>, k: Int, into velocities: UnsafeMutableBufferPointer<Float>,
                     products: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        fatalError("not needed by the score")
    }
}

final class ScoreTests: XCTestCase {
    let times = [0.0, 0.1, 0.35, 0.6, 0.85, 0.95]

    func schedules() throws -> [any Schedule] {
        [TrigSchedule(), LinearSchedule(),
         try FourierSchedule(alphaCoefficients: [0.2, -0.1], betaCoefficients: [0.15, 0.05])]
    }

    /// The hand-derived reference agrees with finite differences of the
    /// closed-form log ρ_t (so the reference itself is checked).
    func testReferenceMatchesFiniteDifferences() throws {
        let mixture = try Fixtures.mixture2D()
        let x = [[0.3, -0.7], [1.5, 0.2], [-1.0, 1.1]]
        for t in [0.0, 0.4, 0.9] {
            let c = TrigSchedule().coefficients(at: t)
            for p in x {
                let a = MixtureScoreReference.score(mixture, alpha: c.alpha, beta: c.beta, x: p)
                let b = try MixtureScoreReference.finiteDifferenceScore(mixture, alpha: c.alpha, beta: c.beta, x: p)
                for r in 0..<2 { XCTAssertEqual(a[r], b[r], accuracy: 2e-3 * (1 + abs(a[r])), "t=\(t) x=\(p)") }
            }
        }
    }

    /// s from the exact mixture velocity equals the analytic mixture score,
    /// for trig, linear and a Fourier schedule at six times up to t = 0.95.
    /// Tolerance 2e-4·(1 + |s|): the velocity is rounded to Float and the
    /// formula amplifies its error by β/|α(α'β − αβ')| (≤ 10 here).
    func testScoreMatchesAnalyticMixtureScore() throws {
        let mixture = try Fixtures.mixture2D()
        let x = Fixtures.points(40, dimension: 2, seed: 3, scale: 2)
        for schedule in try schedules() {
            let field = try ScoreField(field: AnalyticMixtureFlow(mixture: mixture, schedule: schedule), schedule: schedule)
            for t in times {
                let s = try field.scores(times: [Double](repeating: t, count: 40), points: x)
                let c = schedule.coefficients(at: t)
                var worst = 0.0
                for i in 0..<40 {
                    let ref = MixtureScoreReference.score(mixture, alpha: c.alpha, beta: c.beta,
                                                          x: [Double(x.scalars[2 * i]), Double(x.scalars[2 * i + 1])])
                    for r in 0..<2 { worst = max(worst, abs(Double(s.scalars[2 * i + r]) - ref[r]) / (1 + abs(ref[r]))) }
                }
                XCTAssertLessThan(worst, 2e-4, "\(schedule.name) t=\(t)")
            }
        }
    }

    /// The DESIGN.md special cases: trig s = −x + (2/π) tan(πt/2) v,
    /// linear s = (t v − x)/(1 − t), to Float rounding.
    func testClosedFormsForTrigAndLinear() throws {
        let mixture = try Fixtures.mixture2D()
        let x = Fixtures.points(10, dimension: 2, seed: 5)
        for (schedule, formula) in [(TrigSchedule() as any Schedule, { (t: Double, x: Double, v: Double) in -x + 2 / .pi * tan(.pi * t / 2) * v }),
                                    (LinearSchedule(), { (t: Double, x: Double, v: Double) in (t * v - x) / (1 - t) })] {
            let flow = AnalyticMixtureFlow(mixture: mixture, schedule: schedule)
            let t = [Double](repeating: 0.7, count: 10)
            let s = try ScoreField(field: flow, schedule: schedule).scores(times: t, points: x)
            var v = [Float](repeating: 0, count: 20)
            t.withUnsafeBufferPointer { tb in x.scalars.withUnsafeBufferPointer { xb in v.withUnsafeMutableBufferPointer {
                flow.velocity(times: tb, points: xb, into: $0, workspace: flow.makeWorkspace()) } } }
            for i in 0..<20 {
                let ref = formula(0.7, Double(x.scalars[i]), Double(v[i]))
                XCTAssertEqual(Double(s.scalars[i]), ref, accuracy: 1e-5 * (1 + abs(ref)), schedule.name)
            }
        }
    }

    /// A diagonal base N(μ0, σ0²): the general formula against the
    /// standard-normal oracle mapped through y = (x − α μ0)/σ0.
    func testDiagonalGaussianBase() throws {
        let mixture = try Fixtures.mixture2D()
        let mu0 = [0.5, -1.0], sd0 = [1.5, 0.7]
        let scaled = try GaussianMixture(
            weights: mixture.weights, means: mixture.means.map { [$0[0] / sd0[0], $0[1] / sd0[1]] },
            covariances: mixture.covariances.map { [$0[0] / (sd0[0] * sd0[0]), $0[1] / (sd0[0] * sd0[1]),
                                                    $0[2] / (sd0[0] * sd0[1]), $0[3] / (sd0[1] * sd0[1])] })
        let schedule = TrigSchedule()
        let field = ShiftedBaseMixtureField(inner: AnalyticMixtureFlow(mixture: scaled, schedule: schedule), mean: mu0, sd: sd0)
        let base = try DiagonalNormal(mean: mu0, standardDeviation: sd0)
        let flow = try Flow(field: field, base: base, schedule: schedule)
        let x = Fixtures.points(20, dimension: 2, seed: 9, scale: 2)
        for t in [0.05, 0.5, 0.9] {
            let s = try flow.score(times: [Double](repeating: t, count: 20), points: x)
            let c = schedule.coefficients(at: t)
            for i in 0..<20 {
                let y = (0..<2).map { (Double(x.scalars[2 * i + $0]) - c.alpha * mu0[$0]) / sd0[$0] }
                let ref = MixtureScoreReference.score(scaled, alpha: c.alpha, beta: c.beta, x: y)
                for r in 0..<2 {
                    XCTAssertEqual(Double(s.scalars[2 * i + r]), ref[r] / sd0[r], accuracy: 2e-4 * (1 + abs(ref[r] / sd0[r])), "t=\(t)")
                }
            }
        }
    }

    /// The singular ends are refused, not clamped: t = 1 (α = 0), and t = 0
    /// for a Fourier schedule with β'(0) = 0 (α'β − αβ' = 0 there).
    func testSingularTimesAreRefused() throws {
        let mixture = try Fixtures.mixture2D()
        let x = Tensor(shape: [1, 2], scalars: [0.1, 0.2])
        let trig = try ScoreField(field: AnalyticMixtureFlow(mixture: mixture, schedule: TrigSchedule()), schedule: TrigSchedule())
        XCTAssertThrowsError(try trig.scores(times: [1], points: x)) { error in
            guard case FlowError.invalidArgument(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("singular"), m)
        }
        XCTAssertThrowsError(try trig.scores(times: [1.5], points: x))
        XCTAssertThrowsError(try trig.scores(times: [.nan], points: x))
        XCTAssertNoThrow(try trig.scores(times: [0.999], points: x))
        let flat = try FourierSchedule(alphaCoefficients: [0], betaCoefficients: [-1 / Double.pi])
        XCTAssertEqual(flat.coefficients(at: 0).betaDot, 0, accuracy: 1e-15)
        let f = try ScoreField(field: AnalyticMixtureFlow(mixture: mixture, schedule: flat), schedule: flat)
        XCTAssertThrowsError(try f.scores(times: [0], points: x))
        XCTAssertNoThrow(try f.scores(times: [0.3], points: x))
        // A flow without a Gaussian base or schedule has no score.
        let noSchedule = try Flow(field: AnalyticMixtureFlow(mixture: mixture, schedule: TrigSchedule()))
        XCTAssertThrowsError(try noSchedule.score(times: [0.5], points: x))
    }
}
