/// Points moved along the probability-flow ODE, with per-sample outcomes.
public struct TransportResult: Sendable {
    /// The end points X_{t1}, `[n, d]`. A sample that did not finish (see
    /// `samples[i].status`) holds its last state.
    public var points: Tensor
    /// Per-sample status, steps, rejections and evaluations.
    public var samples: [SampleStatistics]
    /// Sums over samples.
    public var statistics: SolverStatistics
}

/// Transport plus the change of log-density along each trajectory.
public struct LogDensityChangeResult: Sendable {
    /// The end points, `[n, d]`.
    public var points: Tensor
    /// log ρ_{t1}(X_{t1}) − log ρ_{t0}(X_{t0}) = −∫_{t0}^{t1} ∇·v(s, X_s) ds per sample.
    public var change: [Double]
    /// Hutchinson: the standard error of each change (NaN with one probe);
    /// nil for the exact divergence.
    public var standardErrors: [Double]?
    /// Per-sample status, steps, rejections and evaluations.
    public var samples: [SampleStatistics]
    /// Sums over samples.
    public var statistics: SolverStatistics
}

/// Batched integration of dX/dt = v(t, X) for any `VelocityField`.
///
/// These are the building blocks `Flow` uses; they take and return plain
/// values and hold no state. Every function is thread-safe if the field is.
///
/// Memory: a batch runs in blocks of `blockSize(_:)` samples (a multiple of
/// the integrator's chunk size), so the solver's scratch is O(block), not
/// O(n), whatever the batch. Every sample carries its own step control and
/// the blocks cut the batch exactly where the integrator's chunks do, so
/// results are bit-identical to one unblocked run. The `…Blocks` functions
/// stream: they read each block's points from a closure and hand each
/// block's results to another, and never hold more than one block.
public enum Transport {
    /// Samples per block: 64 of the integrator's chunks (65 536 samples
    /// with the default chunk of 1024), enough to keep up to 64 threads
    /// busy, and fewer (at least one) when a block's states of `width`
    /// Doubles per sample would exceed 2^22 values (32 MB).
    public static func blockSize(_ options: SolverOptions, width: Int = 1) -> Int {
        blockSize(chunk: options.chunkSize, width: width)
    }

    /// `chunk` × min(64, max(1, 2^22 / (chunk · width))).
    static func blockSize(chunk: Int, width: Int) -> Int {
        let perChunk = chunk.multipliedReportingOverflow(by: Swift.max(width, 1))
        let chunks = perChunk.overflow ? 1 : Swift.min(64, Swift.max(1, (1 << 22) / Swift.max(perChunk.partialValue, 1)))
        let (size, overflow) = chunk.multipliedReportingOverflow(by: chunks)
        return overflow ? chunk : size
    }

    /// A progress callback for the block `range` of a run of `total`
    /// samples that reports to `progress` in the run's terms.
    static func blockProgress(_ progress: SolverProgress?, _ range: Range<Int>, total: Int,
                              lastDone: _Count) -> SolverProgress? {
        guard let progress else { return nil }
        return { done, _, fraction in
            lastDone.value = range.lowerBound + done
            return progress(range.lowerBound + done, total,
                            (Double(range.lowerBound) + fraction * Double(range.count)) / Double(total))
        }
    }

    /// Runs `body` for each block of `0..<count` in order, with a progress
    /// callback in the run's terms; rewrites a cancellation's message with
    /// the run's counts.
    static func forEachBlock(count n: Int, blockSize: Int, progress: SolverProgress?,
                             _ body: (Range<Int>, SolverProgress?) throws -> Void) throws {
        let lastDone = _Count()
        var start = 0
        do {
            while start < n {
                let range = start..<Swift.min(n, start + blockSize)
                try body(range, blockProgress(progress, range, total: n, lastDone: lastDone))
                start = range.upperBound
            }
        } catch FlowError.cancelled {
            throw FlowError.cancelled("cancelled by the progress callback after \(lastDone.value) of \(n) samples finished")
        }
    }

    /// Moves `points` (`[n, d]`) from time t0 to t1 (t1 < t0 runs backward).
    /// A conditional field (`ConditionalVelocityField` with contexts) needs
    /// `contexts` `[n, m]`: row i is sample i's context, held fixed along
    /// its trajectory; each sample's result does not depend on the others
    /// in the batch, contexts included.
    ///
    /// - Cost: per accepted step of each sample, `stages` field evaluations
    ///   (one fewer for FSAL methods after the first), plus rejected steps and,
    ///   for adaptive runs without an initial step, two for step selection.
    /// - Throws: `.shapeMismatch` when points are not `[n, d]`, `.nonFinite`
    ///   for NaN/∞ inputs, `.invalidArgument` for bad options or times,
    ///   `.cancelled` when `progress` returns false, `.outOfMemory` when the
    ///   result or a block's scratch cannot be allocated; for contexts, see
    ///   `ConditionalVelocityField` (missing for a conditional field, given
    ///   for an unconditional one, wrong shape, not finite, not a class).
    public static func integrate(field: any VelocityField, points: Tensor, contexts: Tensor? = nil,
                                 from t0: Double, to t1: Double,
                                 options: SolverOptions, progress: SolverProgress? = nil) throws -> TransportResult {
        let d = field.dimension
        let n = try checkPoints(points, dimension: d)
        _ = try BoundContexts.bind(field, contexts, count: n)
        var end = try HostMemory.array(repeating: Float(0), count: n * d, for: "Transport.integrate")
        var samples = try HostMemory.array(repeating: SampleStatistics(), count: n, for: "Transport.integrate")
        let statistics = try integrateBlocks(
            field: field, count: n, from: t0, to: t1, options: options, progress: progress,
            contexts: contexts.map { c in { c.rows($0) } },
            points: { points.rows($0) },
            consume: { range, r in
                end.replaceSubrange(range.lowerBound * d..<range.upperBound * d, with: r.points.scalars)
                samples.replaceSubrange(range, with: r.samples)
            })
        return TransportResult(points: Tensor(shape: [n, d], scalars: end), samples: samples, statistics: statistics)
    }

    /// Streams a transport of `count` samples block by block: `points(range)`
    /// gives the block's start points `[range.count, d]` (finite), and
    /// `consume(range, result)` receives the block's end points and
    /// statistics, in order. Results equal those of `integrate` on the whole
    /// batch, bit for bit.
    /// - Returns: the statistics of the whole run.
    /// - Throws: as `integrate`, and whatever the closures throw.
    /// `contexts(range)`, required for a conditional field, gives the
    /// block's contexts `[range.count, m]`.
    public static func integrateBlocks(field: any VelocityField, count n: Int, from t0: Double, to t1: Double,
                                       options: SolverOptions, progress: SolverProgress? = nil,
                                       contexts: ((Range<Int>) throws -> Tensor)? = nil,
                                       points: (Range<Int>) throws -> Tensor,
                                       consume: (Range<Int>, TransportResult) throws -> Void) throws -> SolverStatistics {
        try options.validate()
        try BoundContexts.check(field, given: contexts != nil)
        let options = options.chunked(for: field, count: n)
        var total = SolverStatistics()
        try forEachBlock(count: n, blockSize: blockSize(options, width: field.dimension), progress: progress) { range, blockProgress in
            let x = try points(range)
            let c = try contexts?(range)
            let r = try integrateBlock(field: field, points: x, contexts: c, from: t0, to: t1, options: options,
                                       progress: blockProgress)
            total.merge(r.statistics)
            try consume(range, r)
        }
        return total
    }

    /// One block of `integrate`, held whole in memory.
    static func integrateBlock(field: any VelocityField, points: Tensor, contexts: Tensor? = nil,
                               from t0: Double, to t1: Double,
                               options: SolverOptions, progress: SolverProgress?) throws -> TransportResult {
        let d = field.dimension
        let n = try checkPoints(points, dimension: d)
        let bound = try BoundContexts.bind(field, contexts, count: n)
        var state = try HostMemory.array(repeating: 0.0, count: points.count, for: "Transport.integrate")
        for i in state.indices { state[i] = Double(points.scalars[i]) }
        let stats = try state.withUnsafeMutableBufferPointer { s in
            try RungeKuttaIntegrator(system: TransportSystem(field: field, contexts: bound), options: options)
                .run(states: s, from: t0, to: t1, progress: progress)
        }
        return TransportResult(points: Tensor(shape: [n, d], scalars: state.map(Float.init)),
                               samples: stats, statistics: SolverStatistics(stats))
    }

    /// Moves `points` from t0 to t1 and integrates the divergence alongside:
    /// the augmented state (x, Δ) with dΔ/ds = ∇·v (exact) or one Δ_k per
    /// Hutchinson probe.
    ///
    /// Error control (`controlChange`): with `true` the Δ components are part
    /// of each sample's error norm (same rtol/atol as x), so the log-density,
    /// not only the path, meets the tolerance; this costs a few steps when Δ
    /// varies faster than x, and is what a caller asking for a log-density at
    /// rtol expects (`Likelihood.logDensity`). With `false` only x is
    /// controlled: the steps, and so the end points, are exactly those of
    /// `integrate` (bit for bit), and Δ is integrated on that path
    /// (`Flow.sample` with a log-density: the same seed gives the same
    /// samples whether or not log-densities are requested).
    ///
    /// - Parameter firstIndex: index of the first sample for Hutchinson probe
    ///   streams (sample i uses `RandomStream(seed, .hutchinsonProbe, firstIndex + i)`).
    /// - Cost: as `integrate`, with each evaluation costing ≈ (1 + d) forward
    ///   passes (exact) or (1 + K) (Hutchinson).
    /// - Throws: as `integrate`, and `.invalidArgument` for a bad probe count.
    public static func integrateWithLogDensityChange(
        field: any VelocityField, points: Tensor, contexts: Tensor? = nil, from t0: Double, to t1: Double,
        divergence method: DivergenceMethod, options: SolverOptions, firstIndex: UInt64 = 0,
        controlChange: Bool = true, progress: SolverProgress? = nil
    ) throws -> LogDensityChangeResult {
        let d = field.dimension
        let n = try checkPoints(points, dimension: d)
        let call = "Transport.integrateWithLogDensityChange"
        _ = try BoundContexts.bind(field, contexts, count: n)
        var end = try HostMemory.array(repeating: Float(0), count: n * d, for: call)
        var change = try HostMemory.array(repeating: 0.0, count: n, for: call)
        var errors: [Double]? = method == .exact ? nil : try HostMemory.array(repeating: .nan, count: n, for: call)
        var samples = try HostMemory.array(repeating: SampleStatistics(), count: n, for: call)
        let statistics = try integrateWithLogDensityChangeBlocks(
            field: field, count: n, from: t0, to: t1, divergence: method, options: options, firstIndex: firstIndex,
            controlChange: controlChange, progress: progress,
            contexts: contexts.map { c in { c.rows($0) } },
            points: { points.rows($0) },
            consume: { range, r in
                end.replaceSubrange(range.lowerBound * d..<range.upperBound * d, with: r.points.scalars)
                change.replaceSubrange(range, with: r.change)
                if let e = r.standardErrors { errors?.replaceSubrange(range, with: e) }
                samples.replaceSubrange(range, with: r.samples)
            })
        return LogDensityChangeResult(points: Tensor(shape: [n, d], scalars: end), change: change,
                                      standardErrors: errors, samples: samples, statistics: statistics)
    }

    /// Streams `integrateWithLogDensityChange` block by block, as
    /// `integrateBlocks` streams `integrate`; bit-identical to one call.
    public static func integrateWithLogDensityChangeBlocks(
        field: any VelocityField, count n: Int, from t0: Double, to t1: Double,
        divergence method: DivergenceMethod, options: SolverOptions, firstIndex: UInt64 = 0,
        controlChange: Bool = true, progress: SolverProgress? = nil,
        contexts: ((Range<Int>) throws -> Tensor)? = nil,
        points: (Range<Int>) throws -> Tensor,
        consume: (Range<Int>, LogDensityChangeResult) throws -> Void
    ) throws -> SolverStatistics {
        try method.validate()
        try options.validate()
        try BoundContexts.check(field, given: contexts != nil)
        // A log-density run (controlChange) costs 1 + d (exact) or 1 + K
        // passes per evaluation and takes proportionally smaller chunks; with
        // controlChange false the chunks stay those of `integrate`, so the
        // end points equal a plain transport's bit for bit.
        let options = options.chunked(for: field, passes: controlChange ? 1 + method.tangents(dimension: field.dimension) : 1,
                                      count: n)
        var total = SolverStatistics()
        try forEachBlock(count: n, blockSize: blockSize(options, width: field.dimension + method.accumulators), progress: progress) { range, blockProgress in
            let x = try points(range)
            let c = try contexts?(range)
            let r = try integrateWithLogDensityChangeBlock(
                field: field, points: x, contexts: c, from: t0, to: t1, divergence: method, options: options,
                firstIndex: firstIndex &+ UInt64(range.lowerBound), controlChange: controlChange, progress: blockProgress)
            total.merge(r.statistics)
            try consume(range, r)
        }
        return total
    }

    /// One block of `integrateWithLogDensityChange`, held whole in memory.
    static func integrateWithLogDensityChangeBlock(
        field: any VelocityField, points: Tensor, contexts: Tensor? = nil, from t0: Double, to t1: Double,
        divergence method: DivergenceMethod, options: SolverOptions, firstIndex: UInt64,
        controlChange: Bool, progress: SolverProgress?
    ) throws -> LogDensityChangeResult {
        let d = field.dimension
        let n = try checkPoints(points, dimension: d)
        let bound = try BoundContexts.bind(field, contexts, count: n)
        let extra = method.accumulators
        let w = d + extra
        var state = try HostMemory.array(repeating: 0.0, count: n * w, for: "Transport.integrateWithLogDensityChange")
        for i in 0..<n { for j in 0..<d { state[i * w + j] = Double(points.scalars[i * d + j]) } }
        let controlled = controlChange ? w : d
        let stats: [SampleStatistics] = try state.withUnsafeMutableBufferPointer { s in
            switch method {
            case .exact:
                return try RungeKuttaIntegrator(system: ExactAugmentedSystem(field: field, contexts: bound, controlledWidth: controlled),
                                                options: options)
                    .run(states: s, from: t0, to: t1, progress: progress)
            case .hutchinson(let k, let kind, let seed):
                let system = try HutchinsonAugmentedSystem(field: field, contexts: bound, count: n, firstIndex: firstIndex,
                                                       probes: k, kind: kind, seed: seed, controlledWidth: controlled,
                                                       threads: options.threads)
                return try RungeKuttaIntegrator(system: system, options: options)
                    .run(states: s, from: t0, to: t1, progress: progress)
            }
        }
        var end = [Float](repeating: 0, count: n * d)
        var change = [Double](repeating: 0, count: n)
        var errors: [Double]? = method == .exact ? nil : [Double](repeating: .nan, count: n)
        for i in 0..<n {
            for j in 0..<d { end[i * d + j] = Float(state[i * w + j]) }
            var mean = 0.0
            for k in 0..<extra { mean += state[i * w + d + k] }
            mean /= Double(extra)
            change[i] = -mean
            if errors != nil && extra > 1 {
                var ss = 0.0
                for k in 0..<extra { let e = state[i * w + d + k] - mean; ss += e * e }
                errors![i] = (ss / Double(extra * (extra - 1))).squareRoot()
            }
        }
        return LogDensityChangeResult(points: Tensor(shape: [n, d], scalars: end), change: change,
                                      standardErrors: errors, samples: stats, statistics: SolverStatistics(stats))
    }

    /// Checks `points` is `[n, d]` with finite entries; returns n.
    static func checkPoints(_ points: Tensor, dimension d: Int) throws -> Int {
        guard points.rank == 2, points.shape[1] == d else {
            throw FlowError.shapeMismatch("points have shape \(points.shape); expected [n, \(d)]")
        }
        if let bad = points.scalars.firstNonFiniteIndex {
            throw FlowError.nonFinite("points[\(bad / d)][\(bad % d)] is \(points.scalars[bad])")
        }
        return points.shape[0]
    }
}

extension SolverOptions {
    /// These options with the chunk a run of `count` samples of `field`
    /// uses (`VelocityField.solverChunkSize(limit:passes:count:)`, with
    /// `chunkSize` the limit). Blocks are cut at multiples of it.
    func chunked(for field: any VelocityField, passes: Int = 1, count: Int) -> SolverOptions {
        var o = self
        o.chunkSize = field.solverChunkSize(limit: chunkSize, passes: passes, count: count)
        return o
    }
}

extension DivergenceMethod {
    /// Tangent passes per evaluation: d (exact) or K (Hutchinson).
    func tangents(dimension d: Int) -> Int {
        switch self {
        case .exact: return d
        case .hutchinson(let k, _, _): return k
        }
    }
}

extension Tensor {
    /// Rows `range` of a `[n, d]` tensor as a `[range.count, d]` tensor
    /// (one block of a streamed run).
    public func rows(_ range: Range<Int>) -> Tensor {
        let d = shape.count > 1 ? shape[1] : 1
        return Tensor(shape: [range.count, d], scalars: Array(scalars[range.lowerBound * d..<range.upperBound * d]))
    }
}

extension SolverStatistics {
    /// Adds another run's statistics, which follows this one (sums, the
    /// larger per-sample maximum, and the first underflow, its sample index
    /// shifted past this run's samples).
    public mutating func merge(_ other: SolverStatistics) {
        if firstUnderflow == nil, let u = other.firstUnderflow { firstUnderflow = (samples + u.sample, u.time, u.step) }
        samples += other.samples
        steps += other.steps
        rejections += other.rejections
        evaluations += other.evaluations
        maxStepsSamples += other.maxStepsSamples
        nonFiniteSamples += other.nonFiniteSamples
        stepUnderflowSamples += other.stepUnderflowSamples
        maxStepsPerSample = Swift.max(maxStepsPerSample, other.maxStepsPerSample)
    }
}

/// A counter shared with a progress closure.
final class _Count {
    var value = 0
}
