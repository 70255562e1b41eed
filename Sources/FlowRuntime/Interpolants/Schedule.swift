/// The coefficients of an interpolant x_t = α(t) x0 + β(t) x1 at one time,
/// with their time derivatives.
public struct InterpolantCoefficients: Sendable, Equatable {
    public var alpha: Double, beta: Double, alphaDot: Double, betaDot: Double
    public init(alpha: Double, beta: Double, alphaDot: Double, betaDot: Double) {
        self.alpha = alpha; self.beta = beta; self.alphaDot = alphaDot; self.betaDot = betaDot
    }
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
            let t = Double(i) / Double(points - 1)
            let c = coefficients(at: t)
            guard c.alpha.isFinite, c.beta.isFinite, c.alphaDot.isFinite, c.betaDot.isFinite else {
                throw FlowError.nonFinite("schedule '\(name)' is not finite at t = \(t)")
            }
        }
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
