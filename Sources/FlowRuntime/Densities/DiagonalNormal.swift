#if canImport(Glibc)
import Glibc
#endif

/// A normal density with diagonal covariance, N(μ, diag(σ²)).
///
/// log ρ(x) = −½ Σ_j [((x_j − μ_j)/σ_j)² + log(2π σ_j²)].
/// Sample i draws from `RandomStream(seed, .baseSample, firstIndex + i)`:
/// x = μ + σ ⊙ z with z the same standard normals `StandardNormal` draws.
public struct DiagonalNormal: Density, Equatable {
    public let mean: [Double]
    public let standardDeviation: [Double]

    /// - Throws: `.invalidArgument` for empty or mismatched lists or a
    ///   standard deviation that is not finite and positive.
    public init(mean: [Double], standardDeviation: [Double]) throws {
        guard !mean.isEmpty, mean.count == standardDeviation.count else {
            throw FlowError.invalidArgument("diagonal normal: \(mean.count) means and \(standardDeviation.count) standard deviations")
        }
        guard mean.allSatisfy(\.isFinite), standardDeviation.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw FlowError.invalidArgument("diagonal normal: means must be finite and standard deviations finite and > 0")
        }
        self.mean = mean
        self.standardDeviation = standardDeviation
    }

    public var dimension: Int { mean.count }

    /// The differential entropy ½ Σ_j log(2πe σ_j²), in nats.
    public var entropy: Double {
        standardDeviation.reduce(0) { $0 + 0.5 * log(2 * Double.pi * M_E * $1 * $1) }
    }

    public func logDensity(points: UnsafeBufferPointer<Float>,
                           into logDensities: UnsafeMutableBufferPointer<Double>) {
        let d = dimension
        let c = standardDeviation.reduce(0) { $0 - 0.5 * log(2 * Double.pi * $1 * $1) }
        for i in 0..<logDensities.count {
            var s = 0.0
            for j in 0..<d {
                let z = (Double(points[i * d + j]) - mean[j]) / standardDeviation[j]
                s += z * z
            }
            logDensities[i] = c - 0.5 * s
        }
    }

    public func sample(seed: UInt64, firstIndex: UInt64, into samples: UnsafeMutableBufferPointer<Float>) {
        forEachRow(samples, seed: seed, firstIndex: firstIndex, purpose: .baseSample) { row, rng in
            for j in 0..<mean.count { row[j] = Float(mean[j] + standardDeviation[j] * rng.nextNormal()) }
        }
    }
}
