/// The simulation-free quadratic loss of stochastic interpolants (DESIGN.md §1):
///
///     G(v̂) = E_{t, x0, x1} [ |v̂(t, x_t)|² − 2 ∂_tI · v̂(t, x_t) ],
///     x_t = α(t) x0 + β(t) x1,   ∂_tI = α'(t) x0 + β'(t) x1,
///
/// minimised by the interpolant's velocity. Reported with it: the regression
/// form R = E|v̂ − ∂_tI|² = G + E|∂_tI|², with the same gradient
/// ∂/∂v̂ = 2 (v̂ − ∂_tI).
public struct InterpolantLoss: Sendable {
    public let schedule: any Schedule
    public let timeDistribution: TimeDistribution

    public init(schedule: any Schedule = TrigSchedule(), timeDistribution: TimeDistribution = .uniform) {
        self.schedule = schedule
        self.timeDistribution = timeDistribution
    }

    /// x_t and ∂_tI for `times.count` rows: `x0`, `x1`, `points`, `targets`
    /// are `[n, d]`. - Cost: O(n d) plus n schedule evaluations.
    /// - Returns: the first time at which the schedule's coefficients were
    ///   not finite, with those coefficients (the row is then NaN), or nil;
    ///   callers turn it into `schedule.nonFiniteError(at:_:)` (this runs on
    ///   worker threads, where it cannot throw).
    @discardableResult
    public func interpolate(times: UnsafeBufferPointer<Double>, x0: UnsafePointer<Float>, x1: UnsafePointer<Float>,
                            dimension d: Int, points: UnsafeMutablePointer<Float>,
                            targets: UnsafeMutablePointer<Float>) -> NonFiniteSchedule? {
        var firstNonFinite: NonFiniteSchedule? = nil
        for i in 0..<times.count {
            let c = schedule.coefficients(at: times[i])
            if firstNonFinite == nil, !c.isFinite { firstNonFinite = NonFiniteSchedule(time: times[i], coefficients: c) }
            let a = Float(c.alpha), b = Float(c.beta), ad = Float(c.alphaDot), bd = Float(c.betaDot)
            for j in (i * d)..<((i + 1) * d) {
                points[j] = a * x0[j] + b * x1[j]
                targets[j] = ad * x0[j] + bd * x1[j]
            }
        }
        return firstNonFinite
    }

    /// Sums over n rows of |v|² − 2 u·v and |v − u|² (Double accumulation),
    /// and, when `gradient` is given, writes ∂L/∂v = 2 · gradientScale · (v − u)
    /// (gradientScale = 1/batch for the mean). `velocities`, `targets`,
    /// `gradient` are `[n, d]`.
    public static func sums(velocities: UnsafePointer<Float>, targets: UnsafePointer<Float>, count: Int,
                            gradient: UnsafeMutablePointer<Float>? = nil, gradientScale: Float = 1) -> LossReport {
        var g = 0.0, r = 0.0
        for j in 0..<count {
            let v = Double(velocities[j]), u = Double(targets[j])
            g += v * v - 2 * u * v
            r += (v - u) * (v - u)
        }
        if let gradient {
            let s = 2 * gradientScale
            for j in 0..<count { gradient[j] = s * (velocities[j] - targets[j]) }
        }
        return LossReport(quadratic: g, regression: r)
    }
}

/// Where a schedule gave non-finite coefficients (see `InterpolantLoss.interpolate`).
public struct NonFiniteSchedule: Sendable, Equatable {
    /// The first such time.
    public var time: Double
    /// (α, β, α', β') there, at least one of them NaN or ±∞.
    public var coefficients: InterpolantCoefficients
}

/// A loss value in both forms (means over a batch, or sums while reducing).
public struct LossReport: Sendable, Equatable {
    /// G = E[|v̂|² − 2 ∂_tI·v̂]; its minimum is −E|v|² (minus the kinetic energy).
    public var quadratic: Double
    /// E|v̂ − ∂_tI|² = G + E|∂_tI|².
    public var regression: Double

    public init(quadratic: Double, regression: Double) {
        self.quadratic = quadratic
        self.regression = regression
    }

    static let zero = LossReport(quadratic: 0, regression: 0)
    static func + (a: LossReport, b: LossReport) -> LossReport {
        LossReport(quadratic: a.quadratic + b.quadratic, regression: a.regression + b.regression)
    }
    func scaled(_ s: Double) -> LossReport { LossReport(quadratic: quadratic * s, regression: regression * s) }
}
