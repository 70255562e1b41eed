#if canImport(Glibc)
import Glibc
#endif

/// The density of training times t ∈ [0, 1]. Changing it reweights the loss
/// over time but leaves its minimiser (the interpolant's velocity) unchanged.
public enum TimeDistribution: Sendable, Equatable {
    /// t ~ U[0, 1] (the paper's choice).
    case uniform
    /// t ~ Beta(a, b), a, b > 0: e.g. Beta(1, 1) = uniform, Beta(0.5, 0.5)
    /// puts more weight near both ends.
    case beta(Double, Double)

    /// - Throws: `.invalidArgument` for non-positive or non-finite Beta parameters.
    public func validate() throws {
        if case .beta(let a, let b) = self, !(a > 0 && b > 0 && a.isFinite && b.isFinite) {
            throw FlowError.invalidArgument("time distribution Beta(\(a), \(b)) needs finite a, b > 0")
        }
    }

    /// One draw from `rng` (uniform: one 53-bit uniform; Beta: two Gamma
    /// draws by Marsaglia–Tsang, X/(X + Y)).
    public func sample(_ rng: inout RandomStream) -> Double {
        switch self {
        case .uniform:
            return rng.nextUniform()
        case .beta(let a, let b):
            let x = Self.gamma(a, &rng), y = Self.gamma(b, &rng)
            let s = x + y
            return s > 0 ? x / s : 0.5
        }
    }

    /// Gamma(shape k, scale 1) by Marsaglia and Tsang (2000); for k < 1 uses
    /// Gamma(k + 1) · U^(1/k).
    static func gamma(_ k: Double, _ rng: inout RandomStream) -> Double {
        if k < 1 {
            return gamma(k + 1, &rng) * pow(rng.nextUniform(), 1 / k)
        }
        let d = k - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat { x = rng.nextNormal(); v = 1 + c * x } while v <= 0
            v = v * v * v
            let u = rng.nextUniform()
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if log(u) < 0.5 * x * x + d * (1 - v + log(v)) { return d * v }
        }
    }
}
