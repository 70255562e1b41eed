/// How the likelihood computes ∇·v.
public enum DivergenceMethod: Sendable, Equatable {
    /// The exact trace of the Jacobian from one batched k = d tangent pass
    /// (`VelocityField.velocityDivergence`). Cost ≈ (1 + d) forward passes
    /// per evaluation.
    case exact
    /// Hutchinson's estimator (1/K) Σ_k ε_kᵀ J ε_k with K probes per sample,
    /// drawn once per sample from `RandomStream(seed, .hutchinsonProbe,
    /// index: sample)` and fixed along its trajectory. Cost ≈ (1 + K) forward
    /// passes per evaluation. Unbiased; the result carries a standard error.
    case hutchinson(probes: Int, kind: ProbeKind, seed: UInt64)

    /// The distribution of Hutchinson probes (both have E[εεᵀ] = I).
    public enum ProbeKind: Sendable, Equatable {
        /// Entries ±1 with equal probability (smallest variance for a fixed J).
        case rademacher
        /// Entries N(0, 1).
        case gaussian
    }

    /// Δ components per sample of the augmented state: 1 (exact) or K.
    var accumulators: Int {
        switch self {
        case .exact: return 1
        case .hutchinson(let k, _, _): return k
        }
    }

    /// - Throws: `.invalidArgument` for K outside `Limits.probes`.
    public func validate() throws {
        if case .hutchinson(let k, _, _) = self { try Limits.checkProbes(k) }
    }
}

/// The augmented probability-flow ODE d/ds (x, Δ) = (v(s, x), ∇·v(s, x))
/// with the exact divergence: width d + 1.
struct ExactAugmentedSystem: BatchedSystem {
    let field: any VelocityField
    /// Each sample's context, held fixed, for a conditional field.
    let contexts: BoundContexts?
    /// d (x only) or d + 1 (x and Δ) in the error norm.
    var controlledWidth: Int
    var width: Int { field.dimension + 1 }

    init(field: any VelocityField, contexts: BoundContexts? = nil, controlledWidth: Int? = nil) {
        self.field = field
        self.contexts = contexts
        self.controlledWidth = controlledWidth ?? field.dimension + 1
    }

    func makeContext() -> _FieldContext { _FieldContext(field, contexts) }

    func evaluate(times: UnsafeBufferPointer<Double>, states: UnsafePointer<Double>,
                  samples: UnsafeBufferPointer<Int>, into derivatives: UnsafeMutablePointer<Double>,
                  context c: _FieldContext) {
        let m = times.count, d = field.dimension, w = d + 1
        let p = c.stagePoints(states, rows: m, dimension: d, width: w)
        if c.divergences.count < m { c.divergences = [Double](repeating: 0, count: m) }
        c.divergences.withUnsafeMutableBufferPointer { div in
            let points = UnsafeBufferPointer(start: p, count: m * d)
            let velocities = UnsafeMutableBufferPointer(start: c.velocities.reserve(m * d), count: m * d)
            let divergences = UnsafeMutableBufferPointer(rebasing: div[0..<m])
            if let contexts {
                contexts.field.velocityDivergence(times: times, points: points,
                                                  contexts: c.stageContexts(contexts, samples: samples),
                                                  into: velocities, divergences: divergences, workspace: c.workspace)
            } else {
                field.velocityDivergence(times: times, points: points, into: velocities, divergences: divergences,
                                         workspace: c.workspace)
            }
            c.unstageVelocities(derivatives, rows: m, dimension: d, width: w)
            for r in 0..<m { derivatives[r * w + d] = div[r] }
        }
    }
}

/// The augmented ODE with K Hutchinson probes: d/ds (x, Δ_1, …, Δ_K) =
/// (v, ε_1ᵀJε_1, …, ε_Kᵀ J ε_K), width d + K. Each Δ_k is an unbiased
/// estimate of the divergence integral on its own; their spread gives the
/// standard error of their mean.
struct HutchinsonAugmentedSystem: BatchedSystem {
    let field: any VelocityField
    /// Each sample's context, held fixed, for a conditional field.
    let contexts: BoundContexts?
    let probeCount: Int
    /// Probes of every sample of the run, `[n, K, d]`.
    let probes: [Float]
    /// d (x only) or d + K (x and every Δ_k) in the error norm.
    let controlledWidth: Int
    var width: Int { field.dimension + probeCount }

    /// Draws the probes of samples `firstIndex ..< firstIndex + count` on
    /// `threads` threads (each sample's probes come from its own stream, so
    /// they do not depend on the thread count).
    init(field: any VelocityField, contexts: BoundContexts? = nil, count: Int, firstIndex: UInt64, probes k: Int,
         kind: DivergenceMethod.ProbeKind, seed: UInt64, controlledWidth: Int? = nil, threads: Int = 1) throws {
        self.field = field
        self.contexts = contexts
        probeCount = k
        self.controlledWidth = controlledWidth ?? field.dimension + k
        let d = field.dimension
        let (kd, o1) = k.multipliedReportingOverflow(by: d)
        let (total, o2) = count.multipliedReportingOverflow(by: kd)
        guard !o1, !o2 else { throw FlowError.outOfMemory("Hutchinson probes: \(count) × \(k) × \(d) floats overflow") }
        var eps = try HostMemory.array(repeating: Float(0), count: total, for: "Hutchinson probes")
        eps.withUnsafeMutableBufferPointer { e in
            let base = e.baseAddress!
            Parallel.forEachChunk(count: count, chunkSize: 1024, threads: threads) { _, range in
                for i in range {
                    var rng = RandomStream(seed: seed, purpose: .hutchinsonProbe, index: firstIndex + UInt64(i))
                    for j in 0..<kd {
                        base[i * kd + j] = kind == .rademacher ? rng.nextRademacher() : Float(rng.nextNormal())
                    }
                }
            }
        }
        probes = eps
    }

    func makeContext() -> _FieldContext { _FieldContext(field, contexts) }

    func evaluate(times: UnsafeBufferPointer<Double>, states: UnsafePointer<Double>,
                  samples: UnsafeBufferPointer<Int>, into derivatives: UnsafeMutablePointer<Double>,
                  context c: _FieldContext) {
        let m = times.count, d = field.dimension, k = probeCount, w = d + k, kd = k * d
        let p = c.stagePoints(states, rows: m, dimension: d, width: w)
        let tan = c.tangents.reserve(m * kd)
        probes.withUnsafeBufferPointer { eps in
            for r in 0..<m { (tan + r * kd).update(from: eps.baseAddress! + samples[r] * kd, count: kd) }
        }
        let prod = c.products.reserve(m * kd)
        let points = UnsafeBufferPointer(start: p, count: m * d), tangents = UnsafeBufferPointer(start: tan, count: m * kd)
        let velocities = UnsafeMutableBufferPointer(start: c.velocities.reserve(m * d), count: m * d)
        let products = UnsafeMutableBufferPointer(start: prod, count: m * kd)
        if let contexts {
            contexts.field.velocityJVP(times: times, points: points, contexts: c.stageContexts(contexts, samples: samples),
                                       tangents: tangents, k: k, into: velocities, products: products, workspace: c.workspace)
        } else {
            field.velocityJVP(times: times, points: points, tangents: tangents, k: k, into: velocities,
                              products: products, workspace: c.workspace)
        }
        c.unstageVelocities(derivatives, rows: m, dimension: d, width: w)
        for r in 0..<m {
            for j in 0..<k {
                var s = 0.0
                for l in 0..<d { s += Double(tan[r * kd + j * d + l]) * Double(prod[r * kd + j * d + l]) }
                derivatives[r * w + d + j] = s
            }
        }
    }
}
