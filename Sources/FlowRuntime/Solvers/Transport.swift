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
public enum Transport {
    /// Moves `points` (`[n, d]`) from time t0 to t1 (t1 < t0 runs backward).
    ///
    /// - Cost: per accepted step of each sample, `stages` field evaluations
    ///   (one fewer for FSAL methods after the first), plus rejected steps and,
    ///   for adaptive runs without an initial step, two for step selection.
    /// - Throws: `.shapeMismatch` when points are not `[n, d]`, `.nonFinite`
    ///   for NaN/∞ inputs, `.invalidArgument` for bad options or times,
    ///   `.cancelled` when `progress` returns false.
    public static func integrate(field: any VelocityField, points: Tensor, from t0: Double, to t1: Double,
                                 options: SolverOptions, progress: SolverProgress? = nil) throws -> TransportResult {
        let d = field.dimension
        let n = try checkPoints(points, dimension: d)
        var state = points.scalars.map(Double.init)
        let stats = try state.withUnsafeMutableBufferPointer { s in
            try RungeKuttaIntegrator(system: TransportSystem(field: field), options: options)
                .run(states: s, from: t0, to: t1, progress: progress)
        }
        return TransportResult(points: Tensor(shape: [n, d], scalars: state.map(Float.init)),
                               samples: stats, statistics: SolverStatistics(stats))
    }

    /// Moves `points` from t0 to t1 and integrates the divergence alongside:
    /// the augmented state (x, Δ) with dΔ/ds = ∇·v (exact) or one Δ_k per
    /// Hutchinson probe.
    ///
    /// Error control: the Δ components are part of each sample's error norm
    /// (same rtol/atol as x), so the log-density, not only the path, meets the
    /// tolerance. This costs a few steps when Δ varies faster than x, and is
    /// what a caller asking for a log-density at rtol expects.
    ///
    /// - Parameter firstIndex: index of the first sample for Hutchinson probe
    ///   streams (sample i uses `RandomStream(seed, .hutchinsonProbe, firstIndex + i)`).
    /// - Cost: as `integrate`, with each evaluation costing ≈ (1 + d) forward
    ///   passes (exact) or (1 + K) (Hutchinson).
    /// - Throws: as `integrate`, and `.invalidArgument` for a bad probe count.
    public static func integrateWithLogDensityChange(
        field: any VelocityField, points: Tensor, from t0: Double, to t1: Double,
        divergence method: DivergenceMethod, options: SolverOptions, firstIndex: UInt64 = 0,
        progress: SolverProgress? = nil
    ) throws -> LogDensityChangeResult {
        try method.validate()
        let d = field.dimension
        let n = try checkPoints(points, dimension: d)
        let extra: Int
        switch method {
        case .exact: extra = 1
        case .hutchinson(let k, _, _): extra = k
        }
        let w = d + extra
        var state = [Double](repeating: 0, count: n * w)
        for i in 0..<n { for j in 0..<d { state[i * w + j] = Double(points.scalars[i * d + j]) } }
        let stats: [SampleStatistics] = try state.withUnsafeMutableBufferPointer { s in
            switch method {
            case .exact:
                return try RungeKuttaIntegrator(system: ExactAugmentedSystem(field: field), options: options)
                    .run(states: s, from: t0, to: t1, progress: progress)
            case .hutchinson(let k, let kind, let seed):
                let system = HutchinsonAugmentedSystem(field: field, count: n, firstIndex: firstIndex,
                                                       probes: k, kind: kind, seed: seed)
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
        if let bad = points.scalars.firstIndex(where: { !$0.isFinite }) {
            throw FlowError.nonFinite("points[\(bad / d)][\(bad % d)] is \(points.scalars[bad])")
        }
        return points.shape[0]
    }
}
