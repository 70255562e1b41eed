/// log ρ_t(x) of points under a flow, with the encoding X_0 as a by-product.
public struct LogDensityResult: Sendable {
    /// log ρ_t(x_i) in nats.
    public var logDensities: [Double]
    /// Hutchinson: standard error of each log-density (NaN with one probe);
    /// nil for the exact divergence.
    public var standardErrors: [Double]?
    /// X_0: the points transported back to the base, `[n, d]`.
    public var basePoints: Tensor
    public var samples: [SampleStatistics]
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
    ///   - time: t ∈ [0, 1] (t = 0 gives the base density, no steps).
    ///   - firstIndex: Hutchinson stream index of the first point.
    /// - Cost: see `Transport.integrateWithLogDensityChange`, plus n base
    ///   log-density evaluations.
    /// - Throws: `.shapeMismatch` (points or base dimension), `.nonFinite`,
    ///   `.invalidArgument` (time outside [0, 1], bad options), `.cancelled`.
    public static func logDensity(field: any VelocityField, base: any Density, points: Tensor, time: Double,
                                  divergence method: DivergenceMethod, options: SolverOptions,
                                  firstIndex: UInt64 = 0, progress: SolverProgress? = nil) throws -> LogDensityResult {
        guard time >= 0, time <= 1 else { throw FlowError.invalidArgument("time \(time) must be in [0, 1]") }
        guard base.dimension == field.dimension else {
            throw FlowError.shapeMismatch("base density dimension \(base.dimension) differs from the field's \(field.dimension)")
        }
        let r = try Transport.integrateWithLogDensityChange(
            field: field, points: points, from: time, to: 0, divergence: method, options: options,
            firstIndex: firstIndex, progress: progress)
        var logp = base.logDensity(of: r.points)
        // change = log ρ0(X_0) − log ρ_t(x).
        for i in logp.indices { logp[i] -= r.change[i] }
        return LogDensityResult(logDensities: logp, standardErrors: r.standardErrors, basePoints: r.points,
                                samples: r.samples, statistics: r.statistics)
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
