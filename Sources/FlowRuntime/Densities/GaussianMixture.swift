#if canImport(Glibc)
import Glibc
#endif

/// A Gaussian mixture ρ(x) = Σ_j p_j N(x; μ_j, C_j) on R^d with full
/// covariances: a target with a closed-form density for tests and demos, and
/// the data side of the analytic oracle `AnalyticMixtureFlow`.
///
/// Evaluation and sampling go through the Cholesky factors C_j = L_j L_jᵀ:
/// log N(x; μ, C) = −½ |L⁻¹(x − μ)|² − Σ_i log L_ii − (d/2) log 2π, and a
/// sample is μ_j + L_j z. All arithmetic is in Double.
public struct GaussianMixture: Density, Equatable {
    /// The dimension d.
    public let dimension: Int
    /// Mixture weights p_j (normalised to sum to 1).
    public let weights: [Double]
    /// Component means μ_j, each `[d]`.
    public let means: [[Double]]
    /// Component covariances C_j, each row-major `[d, d]`.
    public let covariances: [[Double]]
    /// Lower Cholesky factors L_j, row-major `[d, d]`.
    let factors: [[Double]]
    /// log p_j − Σ_i log L_j,ii − (d/2) log 2π.
    let logNormalizers: [Double]

    /// - Parameters:
    ///   - weights: J positive weights (normalised here).
    ///   - means: J vectors of length d.
    ///   - covariances: J symmetric positive-definite row-major d × d matrices.
    /// - Throws: `.invalidArgument` for no components, non-positive or
    ///   non-finite weights, ragged sizes, asymmetric or non-positive-definite
    ///   covariances (naming the component).
    public init(weights: [Double], means: [[Double]], covariances: [[Double]]) throws {
        guard !weights.isEmpty, weights.count == means.count, weights.count == covariances.count else {
            throw FlowError.invalidArgument("mixture: \(weights.count) weights, \(means.count) means, \(covariances.count) covariances must agree and be > 0")
        }
        guard weights.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw FlowError.invalidArgument("mixture weights \(weights) must be finite and > 0")
        }
        let d = means[0].count
        guard d > 0 else { throw FlowError.invalidArgument("mixture dimension must be > 0") }
        let total = weights.reduce(0, +)
        var factors: [[Double]] = [], logNorm: [Double] = []
        for (j, (mu, c)) in zip(means, covariances).enumerated() {
            guard mu.count == d, mu.allSatisfy(\.isFinite) else {
                throw FlowError.invalidArgument("mixture mean \(j) must have \(d) finite entries")
            }
            guard c.count == d * d, c.allSatisfy(\.isFinite) else {
                throw FlowError.invalidArgument("mixture covariance \(j) must have \(d)×\(d) finite entries")
            }
            for r in 0..<d { for s in 0..<r where abs(c[r * d + s] - c[s * d + r]) > 1e-12 * (abs(c[r * d + s]) + 1) {
                throw FlowError.invalidArgument("mixture covariance \(j) is not symmetric at (\(r), \(s))")
            } }
            guard let l = Self.cholesky(c, d) else {
                throw FlowError.invalidArgument("mixture covariance \(j) is not positive definite")
            }
            var logDet = 0.0
            for i in 0..<d { logDet += log(l[i * d + i]) }
            factors.append(l)
            logNorm.append(log(weights[j] / total) - logDet - 0.5 * Double(d) * log(2 * Double.pi))
        }
        dimension = d
        self.weights = weights.map { $0 / total }
        self.means = means
        self.covariances = covariances
        self.factors = factors
        logNormalizers = logNorm
    }

    /// Lower Cholesky factor of a row-major d × d matrix, or nil when it is
    /// not (numerically) positive definite.
    static func cholesky(_ a: [Double], _ d: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            for j in 0...i {
                var s = a[i * d + j]
                for k in 0..<j { s -= l[i * d + k] * l[j * d + k] }
                if i == j {
                    guard s > 0 else { return nil }
                    l[i * d + i] = s.squareRoot()
                } else {
                    l[i * d + j] = s / l[j * d + j]
                }
            }
        }
        return l
    }

    /// log ρ(x) per row of `points` (`[n, d]`), by log-sum-exp over components.
    /// - Cost: O(J d²) per point.
    public func logDensity(points: UnsafeBufferPointer<Float>, into logDensities: UnsafeMutableBufferPointer<Double>) {
        let d = dimension, jCount = weights.count
        var z = [Double](repeating: 0, count: d), terms = [Double](repeating: 0, count: jCount)
        for i in 0..<logDensities.count {
            for j in 0..<jCount {
                // Forward substitution L z = x − μ.
                let l = factors[j], mu = means[j]
                var q = 0.0
                for r in 0..<d {
                    var s = Double(points[i * d + r]) - mu[r]
                    for k in 0..<r { s -= l[r * d + k] * z[k] }
                    z[r] = s / l[r * d + r]
                    q += z[r] * z[r]
                }
                terms[j] = logNormalizers[j] - 0.5 * q
            }
            logDensities[i] = logSumExp(terms)
        }
    }

    /// Sample i draws from `RandomStream(seed, .baseSample, firstIndex + i)`:
    /// one uniform picks the component, then d normals z give μ_j + L_j z.
    public func sample(seed: UInt64, firstIndex: UInt64, into samples: UnsafeMutableBufferPointer<Float>) {
        let d = dimension
        var z = [Double](repeating: 0, count: d)
        for i in 0..<(samples.count / d) {
            var rng = RandomStream(seed: seed, purpose: .baseSample, index: firstIndex + UInt64(i))
            let u = rng.nextUniform()
            var j = 0, acc = weights[0]
            while u > acc && j + 1 < weights.count { j += 1; acc += weights[j] }
            for r in 0..<d { z[r] = rng.nextNormal() }
            let l = factors[j]
            for r in 0..<d {
                var s = means[j][r]
                for k in 0...r { s += l[r * d + k] * z[k] }
                samples[i * d + r] = Float(s)
            }
        }
    }

    /// The mixture mean Σ_j p_j μ_j.
    public var mean: [Double] {
        (0..<dimension).map { r in zip(weights, means).reduce(0) { $0 + $1.0 * $1.1[r] } }
    }

    /// The mixture covariance Σ_j p_j (C_j + μ_j μ_jᵀ) − m mᵀ, row-major.
    public var covariance: [Double] {
        let d = dimension, m = mean
        var c = [Double](repeating: 0, count: d * d)
        for (j, p) in weights.enumerated() {
            for r in 0..<d { for s in 0..<d { c[r * d + s] += p * (covariances[j][r * d + s] + means[j][r] * means[j][s]) } }
        }
        for r in 0..<d { for s in 0..<d { c[r * d + s] -= m[r] * m[s] } }
        return c
    }
}

/// log Σ_j exp(terms_j), stable for large magnitudes; −∞ for no terms.
@inline(__always)
func logSumExp(_ terms: [Double]) -> Double {
    guard let top = terms.max(), top.isFinite else { return terms.max() ?? -.infinity }
    var s = 0.0
    for v in terms { s += exp(v - top) }
    return top + log(s)
}
