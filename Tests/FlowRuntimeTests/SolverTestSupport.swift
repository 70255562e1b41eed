import XCTest
@testable import FlowRuntime

/// α = cos(πt/2), β = sin(πt/2): a private copy so these tests do not depend
/// on the Interpolants module.
struct TestTrigSchedule: Schedule {
    var name: String { "trig" }
    func coefficients(at t: Double) -> InterpolantCoefficients {
        let h = Double.pi / 2
        return InterpolantCoefficients(alpha: cos(h * t), beta: sin(h * t), alphaDot: -h * sin(h * t), betaDot: h * cos(h * t))
    }
}

/// α = 1 − t, β = t.
struct TestLinearSchedule: Schedule {
    var name: String { "linear" }
    func coefficients(at t: Double) -> InterpolantCoefficients {
        InterpolantCoefficients(alpha: 1 - t, beta: t, alphaDot: -1, betaDot: 1)
    }
}

/// dx_j/dt = k cos(t) x_j: exact solution x(t) = x(t0) exp(k (sin t − sin t0)).
/// A smooth test ODE with known solution for convergence orders.
struct ExponentialSineField: VelocityField {
    let dimension: Int
    let k: Double
    func makeWorkspace() -> FieldWorkspace { FieldWorkspace() }
    func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                  into velocities: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        for i in 0..<times.count {
            for j in 0..<dimension {
                velocities[i * dimension + j] = Float(k * cos(times[i]) * Double(points[i * dimension + j]))
            }
        }
    }
    func velocityJVP(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                     tangents: UnsafeBufferPointer<Float>, k kk: Int,
                     into velocities: UnsafeMutableBufferPointer<Float>,
                     products: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        velocity(times: times, points: points, into: velocities, workspace: workspace)
        for i in 0..<times.count {
            for l in 0..<(kk * dimension) {
                products[i * kk * dimension + l] = Float(k * cos(times[i])) * tangents[i * kk * dimension + l]
            }
        }
    }
    func exact(_ x0: Double, from t0: Double, to t1: Double) -> Double { x0 * exp(k * (sin(t1) - sin(t0))) }
}

enum Fixtures {
    /// A 3-component mixture in d = 2 with correlated covariances.
    static func mixture2D() throws -> GaussianMixture {
        try GaussianMixture(
            weights: [0.5, 0.3, 0.2],
            means: [[2, 0], [-1.5, 1.5], [0, -2.5]],
            covariances: [[0.3, 0.1, 0.1, 0.2], [0.15, -0.05, -0.05, 0.25], [0.4, 0, 0, 0.1]])
    }

    /// A 2-component mixture in dimension d with random SPD covariances.
    static func mixture(dimension d: Int, seed: UInt64) throws -> GaussianMixture {
        var rng = RandomStream(seed: seed, purpose: .custom, index: 0)
        var means: [[Double]] = [], covs: [[Double]] = []
        for _ in 0..<2 {
            means.append((0..<d).map { _ in 1.5 * rng.nextNormal() })
            let b = (0..<(d * d)).map { _ in 0.3 * rng.nextNormal() }
            var c = [Double](repeating: 0, count: d * d)
            for r in 0..<d { for s in 0..<d {
                var v = r == s ? 0.2 : 0
                for k in 0..<d { v += b[r * d + k] * b[s * d + k] }
                c[r * d + s] = v
            } }
            covs.append(c)
        }
        return try GaussianMixture(weights: [0.6, 0.4], means: means, covariances: covs)
    }

    static func points(_ n: Int, dimension d: Int, seed: UInt64, scale: Double = 1) -> Tensor {
        var rng = RandomStream(seed: seed, purpose: .custom, index: 1)
        return Tensor(shape: [n, d], scalars: (0..<(n * d)).map { _ in Float(scale * rng.nextNormal()) })
    }
}

/// dx/dt = x² + 1 (any dimension, componentwise): x(t) = tan(t + atan x(t0) − t0)
/// reaches infinity at t* = t0 + π/2 − atan x(t0), so an adaptive solve's
/// steps shrink like t* − t until they underflow (issue 16); x(t0) ≤
/// tan(π/2 − (t1 − t0)) reaches t1.
struct TangentBlowUpField: VelocityField {
    let dimension: Int
    func makeWorkspace() -> FieldWorkspace { FieldWorkspace() }
    func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                  into velocities: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        for i in 0..<points.count { velocities[i] = points[i] * points[i] + 1 }
    }
    func velocityJVP(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                     tangents: UnsafeBufferPointer<Float>, k: Int,
                     into velocities: UnsafeMutableBufferPointer<Float>,
                     products: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
        velocity(times: times, points: points, into: velocities, workspace: workspace)
        let d = dimension
        for i in 0..<times.count {
            for l in 0..<(k * d) { products[i * k * d + l] = 2 * points[i * d + l % d] * tangents[i * k * d + l] }
        }
    }
    /// The blow-up time from x0 at t0.
    static func blowUpTime(_ x0: Double, from t0: Double = 0) -> Double { t0 + Double.pi / 2 - atan(x0) }
}
