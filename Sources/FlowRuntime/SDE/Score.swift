#if canImport(Glibc)
import Glibc
#endif

/// A Gaussian base N(μ, diag(σ²)) seen by the score formula: the standard
/// normal, or a `DiagonalNormal`.
public struct GaussianBase: Sendable, Equatable {
    /// μ, `[d]`.
    public let mean: [Double]
    /// σ, `[d]`, all > 0.
    public let standardDeviation: [Double]

    /// N(0, I_d).
    public init(dimension: Int) {
        mean = [Double](repeating: 0, count: dimension)
        standardDeviation = [Double](repeating: 1, count: dimension)
    }

    /// N(μ, diag σ²) (σ > 0, checked by the caller or by `DiagonalNormal`).
    init(mean: [Double], standardDeviation: [Double]) {
        self.mean = mean
        self.standardDeviation = standardDeviation
    }

    /// The Gaussian behind a density, or nil when it is not one FlowRuntime
    /// knows to be Gaussian (`StandardNormal`, `DiagonalNormal`).
    public init?(_ density: any SampleSource) {
        if let n = density as? StandardNormal {
            self.init(dimension: n.dimension)
        } else if let n = density as? DiagonalNormal {
            self.init(mean: n.mean, standardDeviation: n.standardDeviation)
        } else {
            return nil
        }
    }

    public var dimension: Int { mean.count }
}

/// The score s_t(x) = ∇ log ρ_t(x) of the interpolant density, recovered
/// from the velocity (DESIGN.md §1 "Score and SDE").
///
/// For x_t = α x0 + β x1 with x0 ~ N(μ, diag σ²) independent of x1, both
/// E[x0 | x_t] and E[x1 | x_t] follow from x_t and v = E[∂_tI | x_t]:
///
///     s_t(x) = [ (β'·x − β·v(t, x)) / D(t) + μ ] / (α σ²),   D = α'β − αβ'
///
/// (elementwise in σ², μ). For N(0, I): s = (β'x − βv) / (α (α'β − αβ')).
/// Trig: s = −x + (2/π) tan(πt/2) v. Linear: s = (t v − x)/(1 − t).
///
/// **Singular ends.** The formula divides by the singular factor
/// S(t) = α(t)·(α'β − αβ')(t). S → 0 as α → 0 (t → 1: the score of the data
/// density is not recoverable from the velocity, and any velocity error is
/// amplified by 1/α), and S also vanishes wherever α'β = αβ' (possible for
/// some learned Fourier schedules, e.g. at t = 0 when β'(0) = 0). This type
/// **refuses** such times: `evaluate` throws `.invalidArgument` when
/// |S(t)| < `minimumSingularFactor` (default 1e-6). It never clamps: a
/// clamped score would be silently wrong. The SDE sampler instead tapers the
/// diffusion to zero where |S| is small (see `Diffusion`).
public struct ScoreField: Sendable {
    /// The velocity field v(t, x).
    public let field: any VelocityField
    /// The schedule the field was trained with.
    public let schedule: any Schedule
    /// The Gaussian base ρ0.
    public let base: GaussianBase
    /// Times with |α(α'β − αβ')| below this are refused (default 1e-6).
    public var minimumSingularFactor: Double = 1e-6

    /// - Throws: `.shapeMismatch` when the base's dimension differs from the field's.
    public init(field: any VelocityField, schedule: any Schedule, base: GaussianBase? = nil) throws {
        let b = base ?? GaussianBase(dimension: field.dimension)
        guard b.dimension == field.dimension else {
            throw FlowError.shapeMismatch("base dimension \(b.dimension) differs from the field's \(field.dimension)")
        }
        self.field = field
        self.schedule = schedule
        self.base = b
    }

    /// The score's singular factor S(t) = α (α'β − αβ').
    public static func singularFactor(_ c: InterpolantCoefficients) -> Double {
        c.alpha * (c.alphaDot * c.beta - c.alpha * c.betaDot)
    }

    /// s[i, :] = s_{times[i]}(points[i, :]), with the velocities as a by-product.
    /// `times: [n]`, `points`, `scores`: `[n, d]`.
    /// - Cost: one field evaluation of n samples plus O(n d).
    /// - Throws: `.shapeMismatch` for mismatched buffers, `.invalidArgument`
    ///   for a time outside [0, 1] or where the score is singular (see above),
    ///   `.nonFinite` for a NaN/∞ time or point, or where the schedule is not
    ///   finite (a failed host schedule).
    public func evaluate(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                         into scores: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace? = nil) throws {
        let n = times.count, d = field.dimension
        guard points.count == n * d, scores.count == n * d else {
            throw FlowError.shapeMismatch("score: \(n) times need points and scores of \(n * d) values; got \(points.count) and \(scores.count)")
        }
        for i in 0..<n {
            guard times[i].isFinite else { throw FlowError.nonFinite("score: time \(i) is \(times[i])") }
            guard (0...1).contains(times[i]) else {
                throw FlowError.invalidArgument("score: time \(i) = \(times[i]) is outside [0, 1]")
            }
            let s = Self.singularFactor(try schedule.finiteCoefficients(at: times[i]))
            guard abs(s) >= minimumSingularFactor else {
                throw FlowError.invalidArgument(
                    "score: singular at t = \(times[i]) (|α(α'β − αβ')| = \(abs(s)) < \(minimumSingularFactor)); the score is not recoverable from the velocity where α → 0 (t → 1)")
            }
        }
        if let bad = points.firstNonFiniteIndex {
            throw FlowError.nonFinite("score: points[\(bad / d)][\(bad % d)] is \(points[bad])")
        }
        if n == 0 { return }
        let ws = workspace ?? field.makeWorkspace()
        field.velocity(times: times, points: points, into: scores, workspace: ws)  // v, overwritten below
        for i in 0..<n {
            let c = schedule.coefficients(at: times[i])
            base.scoreFromVelocity(c, x: points.baseAddress! + i * d, v: scores.baseAddress! + i * d,
                                   into: scores.baseAddress! + i * d, scale: 1)
        }
    }

    /// Convenience: scores of `points` (`[n, d]`) at per-row times.
    /// - Throws: as `evaluate`.
    public func scores(times: [Double], points: Tensor) throws -> Tensor {
        guard points.rank == 2, points.shape[1] == field.dimension, points.shape[0] == times.count else {
            throw FlowError.shapeMismatch("score: points \(points.shape) for \(times.count) times and dimension \(field.dimension)")
        }
        try HostMemory.reserve(points.count, of: Float.self, for: "scores of \(points.shape[0]) points")
        var out = Tensor(shape: points.shape)
        try times.withUnsafeBufferPointer { t in
            try points.scalars.withUnsafeBufferPointer { p in
                try out.scalars.withUnsafeMutableBufferPointer { try evaluate(times: t, points: p, into: $0) }
            }
        }
        return out
    }
}

extension GaussianBase {
    /// out = scale · s_t(x) from x and v = v(t, x) (one row of d values);
    /// `out` may alias `v`. The caller guarantees S(t) ≠ 0.
    @inline(__always)
    func scoreFromVelocity(_ c: InterpolantCoefficients, x: UnsafePointer<Float>, v: UnsafePointer<Float>,
                           into out: UnsafeMutablePointer<Float>, scale: Double) {
        let dd = c.alphaDot * c.beta - c.alpha * c.betaDot
        for j in 0..<mean.count {
            let sigma = standardDeviation[j]
            let s = ((c.betaDot * Double(x[j]) - c.beta * Double(v[j])) / dd + mean[j]) / (c.alpha * sigma * sigma)
            out[j] = Float(scale * s)
        }
    }
}

extension Flow {
    /// The score of this flow at per-row times: requires a Gaussian base
    /// (`StandardNormal`, `DiagonalNormal`) and a known schedule. See
    /// `ScoreField` for the formula and the refusal near α = 0.
    /// - Throws: `.unsupported` without a Gaussian base or a schedule;
    ///   otherwise as `ScoreField.evaluate`.
    public func score(times: [Double], points: Tensor) throws -> Tensor {
        try scoreField().scores(times: times, points: points)
    }

    /// The `ScoreField` of this flow.
    /// - Throws: `.unsupported` without a Gaussian base or a schedule, or
    ///   for a conditional flow (its score needs contexts, not taken here).
    public func scoreField() throws -> ScoreField {
        if contextDimension > 0 {
            throw FlowError.unsupported("the score and SDE sampling of a conditional flow are not supported yet: use the ODE (sample with contexts)")
        }
        guard let schedule else {
            if interpolantName == Self.customInterpolant {
                throw FlowError.unsupported(
                    "the score needs the interpolant schedule the flow was trained with; this flow's file records a custom (host-supplied) schedule, which a file cannot hold: rebuild the flow from its model with that schedule")
            }
            throw FlowError.unsupported("the score needs the interpolant schedule the flow was trained with")
        }
        guard let gaussian = GaussianBase(base) else {
            throw FlowError.unsupported("the score from the velocity needs a Gaussian base (standard or diagonal normal)")
        }
        return try ScoreField(field: field, schedule: schedule, base: gaussian)
    }
}
