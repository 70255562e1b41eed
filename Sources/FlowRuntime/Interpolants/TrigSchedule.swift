#if canImport(Glibc)
import Glibc
#endif

/// The paper's default schedule: α = cos(πt/2), β = sin(πt/2), so that
/// α² + β² = 1 (variance preserving between two unit-variance densities).
///
/// α' = −(π/2) sin(πt/2), β' = (π/2) cos(πt/2).
public struct TrigSchedule: Schedule {
    public init() {}
    public var name: String { "trig" }
    public func coefficients(at t: Double) -> InterpolantCoefficients {
        let h = 0.5 * Double.pi
        // Exact endpoints: cos(π/2) in floating point is 6e-17, not 0.
        if t == 1 { return InterpolantCoefficients(alpha: 0, beta: 1, alphaDot: -h, betaDot: 0) }
        let s = sin(h * t), c = cos(h * t)
        return InterpolantCoefficients(alpha: c, beta: s, alphaDot: -h * s, betaDot: h * c)
    }
}

/// The linear schedule (rectified flow / flow matching's OT path):
/// α = 1 − t, β = t, α' = −1, β' = 1.
public struct LinearSchedule: Schedule {
    public init() {}
    public var name: String { "linear" }
    public func coefficients(at t: Double) -> InterpolantCoefficients {
        InterpolantCoefficients(alpha: 1 - t, beta: t, alphaDot: -1, betaDot: 1)
    }
}
