/// The coefficients of an interpolant x_t = α(t) x0 + β(t) x1 at one time,
/// with their time derivatives.
public struct InterpolantCoefficients: Sendable, Equatable {
    public var alpha: Double, beta: Double, alphaDot: Double, betaDot: Double
    public init(alpha: Double, beta: Double, alphaDot: Double, betaDot: Double) {
        self.alpha = alpha; self.beta = beta; self.alphaDot = alphaDot; self.betaDot = betaDot
    }
}

/// A schedule: a pure function of t ∈ [0, 1] with α(0)=1, α(1)=0, β(0)=0,
/// β(1)=1 (DESIGN.md §1). Implementations: trig, linear, fourier, host callback.
public protocol Schedule: Sendable {
    /// A short name recorded in exported metadata ("trig", "linear", …).
    var name: String { get }
    func coefficients(at t: Double) -> InterpolantCoefficients
}
