/// A continuous normalizing flow: a velocity field v(t, x) (a trained
/// `Model`, or any `VelocityField`), the base density ρ0 it starts from, and
/// optionally the interpolant schedule it was trained with (recorded, not
/// needed to sample or evaluate densities).
///
/// Time runs from t = 0 (base) to t = 1 (data). A `Flow` is immutable and
/// safe to use from many threads at once (each call brings its own scratch).
public final class Flow: Sendable {
    /// The velocity field.
    public let field: any VelocityField
    /// The base density ρ0 at t = 0.
    public let base: any Density
    /// The interpolant schedule the field was trained with, if known.
    public let schedule: (any Schedule)?

    /// - Parameters:
    ///   - base: ρ0; nil means the standard normal N(0, I_d).
    /// - Throws: `.shapeMismatch` when the base's dimension differs from the field's.
    public init(field: any VelocityField, base: (any Density)? = nil, schedule: (any Schedule)? = nil) throws {
        let b = base ?? StandardNormal(dimension: field.dimension)
        guard b.dimension == field.dimension else {
            throw FlowError.shapeMismatch("base density dimension \(b.dimension) differs from the field's \(field.dimension)")
        }
        self.field = field
        self.base = b
        self.schedule = schedule
    }

    /// The state dimension d.
    public var dimension: Int { field.dimension }

    /// Samples of the model density ρ1 and, optionally, their log-densities.
    public struct Samples: Sendable {
        /// X_1, `[count, d]`.
        public var points: Tensor
        /// log ρ1(X_1) per sample when requested.
        public var logDensities: [Double]?
        /// Hutchinson standard errors when the log-density used probes.
        public var standardErrors: [Double]?
        /// Per-sample status, steps, rejections and evaluations.
        public var samples: [SampleStatistics]
        /// Sums over samples.
        public var statistics: SolverStatistics
    }

    /// Draws `count` base samples (sample i from `RandomStream(seed,
    /// .baseSample, firstIndex + i)`) and transports them to t = 1. With
    /// `logDensity`, the divergence is integrated in the same pass:
    /// log ρ1(X_1) = log ρ0(X_0) − ∫_0^1 ∇·v(s, X_s) ds.
    ///
    /// - Cost: see `Transport.integrate` (and `integrateWithLogDensityChange`).
    /// - Throws: `.invalidArgument` (count ≤ 0 or too large, bad options),
    ///   `.cancelled` when `progress` returns false.
    public func sample(count: Int, seed: UInt64, solver: SolverOptions = .dopri5(),
                       logDensity method: DivergenceMethod? = nil, firstIndex: UInt64 = 0,
                       progress: SolverProgress? = nil) throws -> Samples {
        guard count > 0, count.multipliedReportingOverflow(by: dimension).partialValue < 1 << 40,
              !count.multipliedReportingOverflow(by: dimension).overflow else {
            throw FlowError.invalidArgument("sample count \(count) must be > 0 and count × dim < 2^40")
        }
        let x0 = base.samples(count: count, seed: seed, firstIndex: firstIndex)
        guard let method else {
            let r = try Transport.integrate(field: field, points: x0, from: 0, to: 1, options: solver, progress: progress)
            return Samples(points: r.points, logDensities: nil, standardErrors: nil, samples: r.samples, statistics: r.statistics)
        }
        let r = try Transport.integrateWithLogDensityChange(field: field, points: x0, from: 0, to: 1, divergence: method,
                                                            options: solver, firstIndex: firstIndex, progress: progress)
        var logp = base.logDensity(of: x0)
        for i in logp.indices { logp[i] += r.change[i] }
        return Samples(points: r.points, logDensities: logp, standardErrors: r.standardErrors,
                       samples: r.samples, statistics: r.statistics)
    }

    /// Moves `points` (`[n, d]`) along the flow from time `from` to `to`
    /// (both in [0, 1]; `to < from` runs backward).
    /// - Throws: `.invalidArgument` for times outside [0, 1] or bad options,
    ///   `.shapeMismatch`, `.nonFinite`, `.cancelled`.
    public func transport(points: Tensor, from t0: Double, to t1: Double, solver: SolverOptions = .dopri5(),
                          progress: SolverProgress? = nil) throws -> TransportResult {
        guard (0...1).contains(t0), (0...1).contains(t1) else {
            throw FlowError.invalidArgument("times from = \(t0), to = \(t1) must be in [0, 1]")
        }
        return try Transport.integrate(field: field, points: points, from: t0, to: t1, options: solver, progress: progress)
    }

    /// Encodes data into the base: the backward transport from t = 1 to 0.
    public func encode(points: Tensor, solver: SolverOptions = .dopri5(),
                       progress: SolverProgress? = nil) throws -> TransportResult {
        try transport(points: points, from: 1, to: 0, solver: solver, progress: progress)
    }

    /// log ρ_t(x) of `points` (`[n, d]`) for t ∈ [0, 1] (see
    /// `Likelihood.logDensity`); the result also holds the encodings X_0.
    public func logDensity(points: Tensor, time: Double = 1, method: DivergenceMethod = .exact,
                           solver: SolverOptions = .dopri5(), firstIndex: UInt64 = 0,
                           progress: SolverProgress? = nil) throws -> LogDensityResult {
        try Likelihood.logDensity(field: field, base: base, points: points, time: time, divergence: method,
                                  options: solver, firstIndex: firstIndex, progress: progress)
    }
}
