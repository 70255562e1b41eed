#if canImport(Glibc)
import Glibc
#endif

/// A learnable schedule for path-length optimisation (DESIGN.md §1):
///
///     α(t) = 1 − t + Σ_{k=1..K} a_k sin(kπt)
///     β(t) =     t + Σ_{k=1..K} b_k sin(kπt)
///
/// Every sin(kπt) vanishes at t = 0 and 1, so the boundary conditions hold
/// for any coefficients. With all coefficients zero it is the linear schedule.
/// `coefficientGradients(at:)` gives ∂(α, β, α', β')/∂(a, b) for an outer
/// optimiser that maximises min_v G over the path.
public struct FourierSchedule: Schedule, Equatable {
    /// a_1…a_K (α's coefficients).
    public var alphaCoefficients: [Double]
    /// b_1…b_K (β's coefficients).
    public var betaCoefficients: [Double]

    /// - Throws: `.invalidArgument` when the two lists differ in length or
    ///   hold a non-finite value.
    public init(alphaCoefficients: [Double], betaCoefficients: [Double]) throws {
        guard alphaCoefficients.count == betaCoefficients.count else {
            throw FlowError.invalidArgument("fourier schedule: \(alphaCoefficients.count) α coefficients but \(betaCoefficients.count) β coefficients")
        }
        guard (alphaCoefficients + betaCoefficients).allSatisfy(\.isFinite) else {
            throw FlowError.nonFinite("fourier schedule: coefficients must be finite")
        }
        self.alphaCoefficients = alphaCoefficients
        self.betaCoefficients = betaCoefficients
    }

    /// K zero coefficients each (the linear schedule, ready to be learned).
    public init(terms: Int) {
        alphaCoefficients = [Double](repeating: 0, count: Swift.max(0, terms))
        betaCoefficients = alphaCoefficients
    }

    /// K, the number of sine terms.
    public var terms: Int { alphaCoefficients.count }
    public var name: String { Self.metadataName }

    public func coefficients(at t: Double) -> InterpolantCoefficients {
        var c = InterpolantCoefficients(alpha: 1 - t, beta: t, alphaDot: -1, betaDot: 1)
        for k in 0..<terms {
            let w = Double(k + 1) * Double.pi
            let s = sin(w * t), co = w * cos(w * t)
            c.alpha += alphaCoefficients[k] * s
            c.beta += betaCoefficients[k] * s
            c.alphaDot += alphaCoefficients[k] * co
            c.betaDot += betaCoefficients[k] * co
        }
        return c
    }

    /// The derivatives of the coefficients with respect to the parameters.
    /// α and α' depend only on a, β and β' only on b, with
    /// ∂α/∂a_k = ∂β/∂b_k = sin(kπt) and ∂α'/∂a_k = ∂β'/∂b_k = kπ cos(kπt);
    /// returned as two arrays of K values: `value[k]` = sin(kπt) and
    /// `rate[k]` = kπ cos(kπt) (the other cross terms are zero).
    /// - Cost: O(K).
    public func coefficientGradients(at t: Double) -> (value: [Double], rate: [Double]) {
        var value = [Double](repeating: 0, count: terms), rate = value
        for k in 0..<terms {
            let w = Double(k + 1) * Double.pi
            value[k] = sin(w * t)
            rate[k] = w * cos(w * t)
        }
        return (value, rate)
    }
}
