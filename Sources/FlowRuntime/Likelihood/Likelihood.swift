/// log ρ_t(x) of points under a flow, with the encoding X_0 as a by-product.
public struct LogDensityResult: Sendable {
    /// log ρ_t(x_i) in nats.
    public var logDensities: [Double]
    /// Hutchinson: standard error of each log-density (NaN with one probe);
    /// nil for the exact divergence.
    public var standardErrors: [Double]?
    /// X_0: the points transported back to the base, `[n, d]`.
    public var basePoints: Tensor
    /// Per-sample status, steps, rejections and evaluations.
    public var samples: [SampleStatistics]
    /// Sums over samples.
    public var statistics: SolverStatistics
}

/// The model log-density along the interpolant (DESIGN.md §1 "Likelihood").
public enum Likelihood {
    /// log ρ_t(x) = log ρ0(X_0) − ∫_0^t ∇·v(s, X_s) ds, where X solves the
    /// flow ODE backward from X_t = x: the augmented state (x, Δ) with
    /// dΔ/ds = ∇·v is integrated from t to 0 (Δ(t) = 0), and
    /// log ρ_t(x) = log ρ0(X_0) + Δ(0).
    ///
    /// - Parameters:
    ///   - points: `[n, d]`.
    ///   - contexts: `[n, m]` for a conditional field (required then; row i
    ///     is held fixed along sample i's trajectory): log ρ_t(x_i | c_i).
    ///   - time: t ∈ [0, 1] (t = 0 gives the base density, no steps).
    ///   - firstIndex: Hutchinson stream index of the first point.
    /// - Cost: see `Transport.integrateWithLogDensityChange`, plus n base
    ///   log-density evaluations.
    /// - Throws: `.shapeMismatch` (points or base dimension), `.nonFinite`,
    ///   `.invalidArgument` (time outside [0, 1], bad options), `.cancelled`.
    public static func logDensity(field: any VelocityField, base: any Density, points: Tensor, contexts: Tensor? = nil,
                                  time: Double,
                                  divergence method: DivergenceMethod, options: SolverOptions,
                                  firstIndex: UInt64 = 0, progress: SolverProgress? = nil) throws -> LogDensityResult {
        let d = field.dimension
        let n = try Transport.checkPoints(points, dimension: d)
        _ = try BoundContexts.bind(field, contexts, count: n)
        let call = "Likelihood.logDensity"
        var logp = try HostMemory.array(repeating: 0.0, count: n, for: call)
        var errors: [Double]? = method == .exact ? nil : try HostMemory.array(repeating: .nan, count: n, for: call)
        var basePoints = try HostMemory.array(repeating: Float(0), count: n * d, for: call)
        var samples = try HostMemory.array(repeating: SampleStatistics(), count: n, for: call)
        let statistics = try logDensityBlocks(
            field: field, base: base, count: n, time: time, divergence: method, options: options,
            firstIndex: firstIndex, progress: progress, contexts: contexts.map { c in { c.rows($0) } },
            points: { points.rows($0) }
        ) { range, r in
            logp.replaceSubrange(range, with: r.logDensities)
            if let e = r.standardErrors { errors?.replaceSubrange(range, with: e) }
            basePoints.replaceSubrange(range.lowerBound * d..<range.upperBound * d, with: r.basePoints.scalars)
            samples.replaceSubrange(range, with: r.samples)
        }
        return LogDensityResult(logDensities: logp, standardErrors: errors, basePoints: Tensor(shape: [n, d], scalars: basePoints),
                                samples: samples, statistics: statistics)
    }

    /// `logDensity`, streamed: `points(range)` gives the block's points
    /// `[range.count, d]` (finite) and `consume(range, result)` receives the
    /// block's results in order; blocks of `Transport.blockSize(options)`,
    /// so memory stays bounded for any `count`. Bit-identical to one call.
    /// - Returns: the statistics of the whole run.
    /// - Throws: as `logDensity`, and whatever the closures throw.
    public static func logDensityBlocks(field: any VelocityField, base: any Density, count: Int, time: Double,
                                        divergence method: DivergenceMethod, options: SolverOptions,
                                        firstIndex: UInt64 = 0, progress: SolverProgress? = nil,
                                        contexts: ((Range<Int>) throws -> Tensor)? = nil,
                                        points: (Range<Int>) throws -> Tensor,
                                        consume: (Range<Int>, LogDensityResult) throws -> Void) throws -> SolverStatistics {
        guard time >= 0, time <= 1 else { throw FlowError.invalidArgument("time \(time) must be in [0, 1]") }
        guard base.dimension == field.dimension else {
            throw FlowError.shapeMismatch("base density dimension \(base.dimension) differs from the field's \(field.dimension)")
        }
        return try Transport.integrateWithLogDensityChangeBlocks(
            field: field, count: count, from: time, to: 0, divergence: method, options: options,
            firstIndex: firstIndex, controlChange: true, progress: progress, contexts: contexts, points: points
        ) { range, r in
            var logp = base.logDensity(of: r.points)
            // change = log ρ0(X_0) − log ρ_t(x).
            for i in logp.indices { logp[i] -= r.change[i] }
            try consume(range, LogDensityResult(logDensities: logp, standardErrors: r.standardErrors, basePoints: r.points,
                                                samples: r.samples, statistics: r.statistics))
        }
    }
}

extension Density {
    /// log ρ(x) per row of `points` (`[n, dimension]`).
    public func logDensity(of points: Tensor) -> [Double] {
        precondition(points.rank == 2 && points.shape[1] == dimension)
        var out = [Double](repeating: 0, count: points.shape[0])
        points.scalars.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { logDensity(points: p, into: $0) }
        }
        return out
    }
}
