/// The coefficients of an interpolant x_t = α(t) x0 + β(t) x1 at one time,
/// with their time derivatives.
public struct InterpolantCoefficients: Sendable, Equatable {
    public var alpha: Double, beta: Double, alphaDot: Double, betaDot: Double
    public init(alpha: Double, beta: Double, alphaDot: Double, betaDot: Double) {
        self.alpha = alpha; self.beta = beta; self.alphaDot = alphaDot; self.betaDot = betaDot
    }

    /// Whether α, β, α' and β' are all finite.
    public var isFinite: Bool { alpha.isFinite && beta.isFinite && alphaDot.isFinite && betaDot.isFinite }
}

/// A schedule: a pure function of t ∈ [0, 1] with α(0)=1, α(1)=0, β(0)=0,
/// β(1)=1 (DESIGN.md §1). Implementations: `TrigSchedule` (the default),
/// `LinearSchedule`, `FourierSchedule`, `CallbackSchedule` (host-supplied).
public protocol Schedule: Sendable {
    /// A short name recorded in exported metadata ("trig", "linear", …).
    var name: String { get }
    /// (α, β, α', β') at time t. - Cost: O(1) (O(K) for Fourier).
    func coefficients(at t: Double) -> InterpolantCoefficients
}

extension Schedule {
    /// Checks the boundary conditions α(0)=1, β(0)=0, α(1)=0, β(1)=1 within
    /// `tolerance` and that the coefficients are finite on a grid of `points`
    /// times: what a host-supplied schedule is validated with.
    /// - Throws: `FlowError.invalidArgument` naming the first violation.
    public func validate(tolerance: Double = 1e-9, points: Int = 65) throws {
        let c0 = coefficients(at: 0), c1 = coefficients(at: 1)
        guard abs(c0.alpha - 1) <= tolerance, abs(c0.beta) <= tolerance,
              abs(c1.alpha) <= tolerance, abs(c1.beta - 1) <= tolerance else {
            throw FlowError.invalidArgument(
                "schedule '\(name)' must have α(0)=1, β(0)=0, α(1)=0, β(1)=1; got α(0)=\(c0.alpha), β(0)=\(c0.beta), α(1)=\(c1.alpha), β(1)=\(c1.beta)")
        }
        for i in 0..<points {
            _ = try finiteCoefficients(at: Double(i) / Double(points - 1))
        }
    }

    /// `coefficients(at:)`, checked: what code that cannot trust the
    /// schedule (a host-supplied one signals failure with NaN) calls.
    /// - Throws: `.nonFinite` from `nonFiniteError(at:_:)` when α, β, α' or β' is NaN or ±∞.
    public func finiteCoefficients(at t: Double) throws -> InterpolantCoefficients {
        let c = coefficients(at: t)
        guard c.isFinite else { throw nonFiniteError(at: t, c) }
        return c
    }

    /// The error for non-finite coefficients `c` at time `t`, naming the
    /// schedule, t and the values (and, for a `CallbackSchedule`, its host
    /// callback as the likely cause).
    public func nonFiniteError(at t: Double, _ c: InterpolantCoefficients) -> FlowError {
        let host = self is CallbackSchedule ? ": did its host callback fail?" : ""
        return FlowError.nonFinite(
            "schedule '\(name)' is not finite at t = \(t) (α = \(c.alpha), β = \(c.beta), α' = \(c.alphaDot), β' = \(c.betaDot))\(host)")
    }
}

/// The built-in schedules by name, for the C ABI, the CLI and ONNX metadata.
public enum ScheduleKind: String, Sendable, CaseIterable {
    case trig, linear

    /// The schedule object.
    public var schedule: any Schedule {
        switch self {
        case .trig: return TrigSchedule()
        case .linear: return LinearSchedule()
        }
    }
}
