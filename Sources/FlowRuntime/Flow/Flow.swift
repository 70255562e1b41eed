/// A continuous normalizing flow: a velocity field v(t, x) (a trained
/// `Model`, or any `VelocityField`), the base density ρ0 it starts from, and
/// optionally the interpolant schedule it was trained with (recorded, not
/// needed to sample or evaluate densities).
///
/// Time runs from t = 0 (base) to t = 1 (data). A `Flow` is immutable and
/// safe to use from many threads at once (each call brings its own scratch).
///
/// Conditional flows (DESIGN.md §5 "Conditioning"): over a conditional
/// field (a `Model` with a context input, any `ConditionalVelocityField`),
/// every call takes contexts, one row per point (or, for `sample`, one
/// context for all); the base does not depend on the context and each
/// sample's context is held fixed along its trajectory, so the flow is
/// p(x | c) for every c at once. Calls without contexts on a conditional
/// flow are errors that say what to pass.
public final class Flow: Sendable {
    /// The velocity field.
    public let field: any VelocityField
    /// The base density ρ0 at t = 0.
    public let base: any Density
    /// The interpolant schedule the field was trained with, if known.
    public let schedule: (any Schedule)?

    /// - Parameters:
    ///   - base: ρ0; nil means the standard normal N(0, I_d).
    /// - Throws: `.shapeMismatch` when the base's dimension differs from the
    ///   field's.
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

    /// Context values per point m (0: unconditional; 1 for a class label).
    public var contextDimension: Int { (field as? any ConditionalVelocityField)?.contextDimension ?? 0 }

    /// The number of classes of a label-conditional network, or nil. A
    /// network trained with label dropout uses the last class, classCount − 1,
    /// as the null label ∅ of guidance.
    public var classCount: Int? { (field as? Model)?.classCount }

    /// The per-range contexts of a sampling run of `count` points: one row
    /// per point (`[count, m]`), or one context (`[m]`, `[1, m]`) for all.
    /// - Throws: as `ConditionalVelocityField` contexts (`BoundContexts.bind`).
    func samplingContexts(_ contexts: Tensor?, count: Int) throws -> ((Range<Int>) -> Tensor)? {
        let m = contextDimension
        guard let contexts, m > 0, contexts.count == m, count != 1 else {
            if let contexts, m > 0, contexts.count == count * m {
                let c = Tensor(shape: [count, m], scalars: contexts.scalars)
                _ = try BoundContexts.bind(field, c, count: count)
                return { c.rows($0) }
            }
            if let contexts, m > 0 {
                throw FlowError.shapeMismatch("contexts have shape \(contexts.shape); expected one context [\(m)] for all \(count) samples or one per sample [\(count), \(m)]")
            }
            try BoundContexts.check(field, given: contexts != nil)
            return nil
        }
        let one = Tensor(shape: [1, m], scalars: contexts.scalars)
        _ = try BoundContexts.bind(field, one, count: 1)
        return { range in
            var values = [Float]()
            values.reserveCapacity(range.count * m)
            for _ in range { values += one.scalars }
            return Tensor(shape: [range.count, m], scalars: values)
        }
    }

    /// The field to sample with guidance weight w: the field itself for
    /// w = 0, else a `GuidedField` with the null label classCount − 1.
    /// - Throws: `.invalidArgument` for a non-finite w or w ≠ 0 with a
    ///   log-density (guidance changes the density); `.unsupported` for a
    ///   network that is not label-conditional.
    func guidedField(_ weight: Double, logDensity: Bool) throws -> any VelocityField {
        guard weight.isFinite else { throw FlowError.invalidArgument("guidance weight \(weight) must be finite") }
        if weight == 0 { return field }
        guard !logDensity else {
            throw FlowError.invalidArgument("guidance weight \(weight) ≠ 0 changes the density: log-densities are not available with guidance (sample without them, or set the weight to 0)")
        }
        guard let model = field as? Model, let classes = model.classCount, classes >= 2 else {
            throw FlowError.unsupported("guidance needs a label-conditional network (a class-label context with a null class, trained with label dropout)")
        }
        return GuidedField(field: model, nullLabel: Float(classes - 1), weight: weight)
    }

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
    /// The samples do not depend on whether log-densities are requested
    /// (bit for bit): the step-size control sees x only, and the
    /// log-density change is integrated on those steps (see
    /// `Transport.integrateWithLogDensityChange`, `controlChange: false`).
    /// Its error is then that of the path's steps, not bounded by rtol on
    /// its own; `logDensity(points:)` controls it.
    ///
    /// A conditional flow needs `contexts`: one per sample `[count, m]`, or
    /// one context `[m]` (or `[1, m]`) for all; then log ρ1(X_1 | c). With a
    /// label-conditional network, `guidance` w ≠ 0 samples
    /// v = (1 + w) v̂(t, x, c) − w v̂(t, x, ∅) (∅ = the last class, the null
    /// label of label dropout); sampling only.
    ///
    /// - Cost: see `Transport.integrate` (and `integrateWithLogDensityChange`);
    ///   guidance doubles it.
    /// - Throws: `.invalidArgument` (count < 0 or too large, bad options,
    ///   missing or unwanted contexts, guidance with a log-density),
    ///   `.shapeMismatch` (contexts), `.unsupported` (guidance without
    ///   labels), `.cancelled` when `progress` returns false, `.outOfMemory`.
    public func sample(count: Int, seed: UInt64, contexts: Tensor? = nil, guidance: Double = 0,
                       solver: SolverOptions = .dopri5(),
                       logDensity method: DivergenceMethod? = nil, firstIndex: UInt64 = 0,
                       progress: SolverProgress? = nil) throws -> Samples {
        try checkCount(count)
        let d = dimension, call = "Flow.sample"
        var points = try HostMemory.array(repeating: Float(0), count: count * d, for: call)
        var logp: [Double]? = method == nil ? nil : try HostMemory.array(repeating: 0.0, count: count, for: call)
        var errors: [Double]?
        if case .hutchinson = method { errors = try HostMemory.array(repeating: .nan, count: count, for: call) }
        var samples = try HostMemory.array(repeating: SampleStatistics(), count: count, for: call)
        let statistics = try sampleBlocks(count: count, seed: seed, contexts: contexts, guidance: guidance,
                                          solver: solver, logDensity: method,
                                          firstIndex: firstIndex, progress: progress) { range, block in
            points.replaceSubrange(range.lowerBound * d..<range.upperBound * d, with: block.points.scalars)
            if let l = block.logDensities { logp?.replaceSubrange(range, with: l) }
            if let e = block.standardErrors { errors?.replaceSubrange(range, with: e) }
            samples.replaceSubrange(range, with: block.samples)
        }
        return Samples(points: Tensor(shape: [count, d], scalars: points), logDensities: logp, standardErrors: errors,
                       samples: samples, statistics: statistics)
    }

    /// `sample`, streamed: the samples are drawn and transported in blocks
    /// of `Transport.blockSize(solver)` and each block (its range of sample
    /// indices, relative to `firstIndex`, and its `Samples`) is handed to
    /// `consume` in order, so memory stays bounded for any `count`. The
    /// blocks together equal one `sample` call bit for bit.
    /// - Returns: the statistics of the whole run.
    /// - Throws: as `sample`, and whatever `consume` throws.
    public func sampleBlocks(count: Int, seed: UInt64, contexts: Tensor? = nil, guidance: Double = 0,
                             solver: SolverOptions = .dopri5(),
                             logDensity method: DivergenceMethod? = nil, firstIndex: UInt64 = 0,
                             progress: SolverProgress? = nil,
                             consume: (Range<Int>, Samples) throws -> Void) throws -> SolverStatistics {
        try checkCount(count)
        let base = self.base
        let field = try guidedField(guidance, logDensity: method != nil)
        let blockContexts = try samplingContexts(contexts, count: count)
        func draw(_ range: Range<Int>) -> Tensor {
            base.samples(count: range.count, seed: seed, firstIndex: firstIndex &+ UInt64(range.lowerBound))
        }
        guard let method else {
            return try Transport.integrateBlocks(field: field, count: count, from: 0, to: 1, options: solver,
                                                 progress: progress, contexts: blockContexts, points: draw) { range, r in
                try consume(range, Samples(points: r.points, logDensities: nil, standardErrors: nil,
                                           samples: r.samples, statistics: r.statistics))
            }
        }
        // The base log-densities need each block's x0: the block is drawn
        // once and kept until its results arrive.
        var x0 = Tensor(shape: [0, dimension])
        return try Transport.integrateWithLogDensityChangeBlocks(
            field: field, count: count, from: 0, to: 1, divergence: method, options: solver, firstIndex: firstIndex,
            controlChange: false, progress: progress, contexts: blockContexts,
            points: { range in x0 = draw(range); return x0 }
        ) { range, r in
            var logp = base.logDensity(of: x0)
            for i in logp.indices { logp[i] += r.change[i] }
            try consume(range, Samples(points: r.points, logDensities: logp, standardErrors: r.standardErrors,
                                       samples: r.samples, statistics: r.statistics))
        }
    }

    /// - Throws: `.invalidArgument` unless 0 ≤ count and count × d < 2^40.
    func checkCount(_ count: Int) throws {
        _ = try Limits.checkSampleCount(count, dimension: dimension)
    }

    /// Moves `points` (`[n, d]`) along the flow from time `from` to `to`
    /// (both in [0, 1]; `to < from` runs backward). A conditional flow needs
    /// `contexts` `[n, m]`, one per point.
    /// - Throws: `.invalidArgument` for times outside [0, 1] or bad options,
    ///   missing or unwanted contexts; `.shapeMismatch`, `.nonFinite`, `.cancelled`.
    public func transport(points: Tensor, contexts: Tensor? = nil, from t0: Double, to t1: Double,
                          solver: SolverOptions = .dopri5(),
                          progress: SolverProgress? = nil) throws -> TransportResult {
        guard (0...1).contains(t0), (0...1).contains(t1) else {
            throw FlowError.invalidArgument("times from = \(t0), to = \(t1) must be in [0, 1]")
        }
        return try Transport.integrate(field: field, points: points, contexts: contexts, from: t0, to: t1,
                                       options: solver, progress: progress)
    }

    /// Encodes data into the base: the backward transport from t = 1 to 0
    /// (contexts `[n, m]` for a conditional flow: the code of x given c).
    public func encode(points: Tensor, contexts: Tensor? = nil, solver: SolverOptions = .dopri5(),
                       progress: SolverProgress? = nil) throws -> TransportResult {
        try transport(points: points, contexts: contexts, from: 1, to: 0, solver: solver, progress: progress)
    }

    /// log ρ_t(x) of `points` (`[n, d]`) for t ∈ [0, 1] (see
    /// `Likelihood.logDensity`); the result also holds the encodings X_0.
    /// Runs in blocks (`Likelihood.logDensityBlocks`). A conditional flow
    /// needs `contexts` `[n, m]`: log ρ_t(x_i | c_i).
    public func logDensity(points: Tensor, contexts: Tensor? = nil, time: Double = 1, method: DivergenceMethod = .exact,
                           solver: SolverOptions = .dopri5(), firstIndex: UInt64 = 0,
                           progress: SolverProgress? = nil) throws -> LogDensityResult {
        try Likelihood.logDensity(field: field, base: base, points: points, contexts: contexts, time: time, divergence: method,
                                  options: solver, firstIndex: firstIndex, progress: progress)
    }

    /// `transport`, streamed in blocks (see `Transport.integrateBlocks`):
    /// bounded memory for any `count`, bit-identical to one call.
    public func transportBlocks(count: Int, from t0: Double, to t1: Double, solver: SolverOptions = .dopri5(),
                                progress: SolverProgress? = nil, contexts: ((Range<Int>) throws -> Tensor)? = nil,
                                points: (Range<Int>) throws -> Tensor,
                                consume: (Range<Int>, TransportResult) throws -> Void) throws -> SolverStatistics {
        guard (0...1).contains(t0), (0...1).contains(t1) else {
            throw FlowError.invalidArgument("times from = \(t0), to = \(t1) must be in [0, 1]")
        }
        return try Transport.integrateBlocks(field: field, count: count, from: t0, to: t1, options: solver,
                                             progress: progress, contexts: contexts, points: points, consume: consume)
    }

    /// `logDensity`, streamed in blocks (see `Likelihood.logDensityBlocks`):
    /// bounded memory for any `count`, bit-identical to one call.
    public func logDensityBlocks(count: Int, time: Double = 1, method: DivergenceMethod = .exact,
                                 solver: SolverOptions = .dopri5(), firstIndex: UInt64 = 0,
                                 progress: SolverProgress? = nil, contexts: ((Range<Int>) throws -> Tensor)? = nil,
                                 points: (Range<Int>) throws -> Tensor,
                                 consume: (Range<Int>, LogDensityResult) throws -> Void) throws -> SolverStatistics {
        try Likelihood.logDensityBlocks(field: field, base: base, count: count, time: time, divergence: method,
                                        options: solver, firstIndex: firstIndex, progress: progress,
                                        contexts: contexts, points: points, consume: consume)
    }
}
