/// A host-supplied schedule: a closure returning (α, β, α', β') at t, e.g. a
/// C function pointer wrapped by the C ABI.
///
/// The closure must be a pure function of t, safe to call from several
/// threads at once (trainers call it from their worker threads), and satisfy
/// the boundary conditions; `Schedule.validate()` checks the latter.
///
/// A closure that fails returns non-finite coefficients (NaN): a trainer
/// step, the score and the SDE sampler then throw `.nonFinite` naming the
/// schedule and t (`Schedule.nonFiniteError(at:_:)`); nothing is updated
/// with NaN. Sampling, transport and log-densities never call the schedule.
public struct CallbackSchedule: Schedule {
    public let name: String
    private let body: @Sendable (Double) -> InterpolantCoefficients

    /// - Parameters:
    ///   - name: recorded in metadata (default "custom").
    ///   - body: t ↦ (α, β, α', β').
    public init(name: String = "custom", _ body: @escaping @Sendable (Double) -> InterpolantCoefficients) {
        self.name = name
        self.body = body
    }

    public func coefficients(at t: Double) -> InterpolantCoefficients { body(t) }
}
