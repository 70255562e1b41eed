import XCTest
@testable import FlowRuntime

/// The quadratic interpolant loss: its sums against a direct Double
/// computation, its parameter gradient (through the graph's VJP) against
/// central differences of the loss, and its minimum against the closed form
/// for Gaussian → Gaussian transport.
final class LossTests: XCTestCase {
    func testSumsAndTheRegressionIdentity() {
        var r = RandomStream(seed: 1, purpose: .custom, index: 0)
        let v = (0..<30).map { _ in Float(r.nextNormal()) }, u = (0..<30).map { _ in Float(r.nextNormal()) }
        var g = [Float](repeating: 0, count: 30)
        let s = InterpolantLoss.sums(velocities: v, targets: u, count: 30, gradient: &g, gradientScale: 0.25)
        var q = 0.0, reg = 0.0, uu = 0.0
        for i in 0..<30 {
            let a = Double(v[i]), b = Double(u[i])
            q += a * a - 2 * a * b; reg += (a - b) * (a - b); uu += b * b
            XCTAssertEqual(g[i], 0.5 * (v[i] - u[i]), accuracy: 1e-6)
        }
        XCTAssertEqual(s.quadratic, q, accuracy: 1e-12)
        XCTAssertEqual(s.regression, reg, accuracy: 1e-12)
        XCTAssertEqual(s.regression, s.quadratic + uu, accuracy: 1e-12)  // R = G + E|∂_tI|²
    }

    func testInterpolation() {
        let loss = InterpolantLoss(schedule: TrigSchedule())
        let t = [0.0, 0.5, 1.0], x0: [Float] = [1, 2, 3, 4, 5, 6], x1: [Float] = [-1, 0, 1, 1, 2, 2]
        var xt = [Float](repeating: 0, count: 6), ut = xt
        _ = t.withUnsafeBufferPointer { loss.interpolate(times: $0, x0: x0, x1: x1, dimension: 2, points: &xt, targets: &ut) }
        let c = Float(0.5.squareRoot()), h = Float.pi / 2
        XCTAssertEqual(xt[0], 1); XCTAssertEqual(xt[4], 2); XCTAssertEqual(xt[5], 2)  // t = 0 → x0, t = 1 → x1
        XCTAssertEqual(xt[2], c * 3 + c * 1, accuracy: 1e-6)
        XCTAssertEqual(ut[0], h * -1, accuracy: 1e-6)                                  // β'(0) x1
        XCTAssertEqual(ut[4], -h * 5, accuracy: 1e-6)                                  // α'(1) x0
        XCTAssertEqual(ut[3], -h * c * 4 + h * c * 1, accuracy: 1e-6)
    }

    /// Central differences with h = 1e-2 on float32 weights: rounding noise
    /// of the Double-accumulated loss (~1e-6) over 2h is ~5e-5 and truncation
    /// ~h²·|∂³L| ≈ 1e-4; tolerance 2e-3 · max(1, max|∂L|). A wrong gradient
    /// (missing 1/B or factor 2, a transposed weight) is off by O(1).
    func testGradientMatchesFiniteDifferencesOfTheLoss() throws {
        let graph = try VelocityMLP(dimension: 2, hiddenWidths: [8, 8], activation: .silu, seed: 3).makeGraph()
        let data = EightGaussians().samples(count: 64, seed: 1).scalars
        let config = TrainerConfiguration(batchSize: 40, heldOutFraction: 0, seed: 5, threads: 2, chunkSize: 16)
        let trainer = try Trainer(graph: graph, data: .samples(data), configuration: config)
        _ = try trainer.computeGradient(step: 0)
        let analytic = trainer.gradient
        let scale = max(1, analytic.flatMap { $0 }.map { abs(Double($0)) }.max()!)
        let h: Float = 1e-2
        var checked = 0
        for (a, p) in trainer.trainable.enumerated() {
            let n = analytic[a].count
            for j in Set([0, n / 2, n - 1]) {
                func loss(_ delta: Float) throws -> Double {
                    trainer.differentiator.withParameter(p) { $0[j] += delta }
                    defer { trainer.differentiator.withParameter(p) { $0[j] -= delta } }
                    return try trainer.computeGradient(step: 0).quadratic
                }
                let fd = (try loss(h) - loss(-h)) / Double(2 * h)
                XCTAssertEqual(Double(analytic[a][j]), fd, accuracy: 2e-3 * scale, "parameter \(p)[\(j)]")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 12)
    }

    /// For x0 ~ N(0, 1), x1 ~ N(μ, σ²) and the trig schedule the velocity is
    /// v(t, x) = β'μ + (αα' + ββ'σ²)/(α² + β²σ²) · (x − βμ), and
    /// min G = −∫ E|v_t|² dt = −(π²/8)(μ² + (σ − 1)²) per dimension
    /// (= −(π²/8) W2²). Monte Carlo with 200,000 draws within 4 standard errors.
    static func exactVelocity(t: Double, x: Double, mean mu: Double, sd sigma: Double) -> Double {
        let c = TrigSchedule().coefficients(at: t)
        let s2 = sigma * sigma
        return c.betaDot * mu + (c.alpha * c.alphaDot + c.beta * c.betaDot * s2) / (c.alpha * c.alpha + c.beta * c.beta * s2) * (x - c.beta * mu)
    }

    static func minimumOfG(mean mu: Double, sd sigma: Double) -> Double {
        -Double.pi * Double.pi / 8 * (mu * mu + (sigma - 1) * (sigma - 1))
    }

    func testGaussianMinimumHasTheClosedForm() {
        let mu = 2.0, sigma = 0.5, n = 200_000
        var sum = 0.0, sum2 = 0.0
        for i in 0..<n {
            var r = RandomStream(seed: 11, purpose: .custom, index: UInt64(i))
            let t = r.nextUniform(), x0 = r.nextNormal(), x1 = mu + sigma * r.nextNormal()
            let c = TrigSchedule().coefficients(at: t)
            let v = Self.exactVelocity(t: t, x: c.alpha * x0 + c.beta * x1, mean: mu, sd: sigma)
            let g = v * v - 2 * (c.alphaDot * x0 + c.betaDot * x1) * v
            sum += g; sum2 += g * g
        }
        let m = sum / Double(n), se = ((sum2 / Double(n) - m * m) / Double(n)).squareRoot()
        XCTAssertEqual(m, Self.minimumOfG(mean: mu, sd: sigma), accuracy: 4 * se)
        XCTAssertLessThan(se, 0.02)
    }
}
