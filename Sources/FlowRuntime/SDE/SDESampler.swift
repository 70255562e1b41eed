/// The diffusion coefficient ε(t) ≥ 0 of the sampling SDE.
///
/// Whatever is chosen, the sampler multiplies it by the **taper**
/// τ(t) = min(1, |α(α'β − αβ')| / taperScale), which is 1 away from the
/// singular ends of the score and falls linearly to 0 as α → 0 (t → 1). Since
/// the score grows like 1/α there, ε·τ·s stays bounded, the noise √(2ετ)
/// vanishes, and the end of the path is the probability-flow ODE. For the
/// trig schedule with the default taperScale 0.1, τ < 1 for t > 0.96; for the
/// linear schedule for t > 0.9.
public enum Diffusion: Sendable {
    /// ε(t) = ε0 (before the taper).
    case constant(Double)
    /// ε(t) given by a function of t, e.g. a host callback (before the taper).
    /// It is called once per time of the grid, on the calling thread, and
    /// must return a finite value ≥ 0.
    case custom(@Sendable (Double) -> Double)

    /// ε(t) before the taper.
    public func value(at t: Double) -> Double {
        switch self {
        case .constant(let e): return e
        case .custom(let f): return f(t)
        }
    }
}

/// How to integrate dX = [v + ε s] dt + √(2ε) dW.
public struct SDEOptions: Sendable {
    /// Euler–Maruyama (one field evaluation per step, weak order 1) or the
    /// stochastic Heun predictor–corrector for additive noise (two per step).
    public enum Method: String, Sendable, CaseIterable { case eulerMaruyama = "euler-maruyama", heun }
    public var method: Method
    /// Uniform steps over [t0, 1] (default 200). The last is always a
    /// deterministic Heun step of the probability-flow ODE (no score, no noise).
    public var steps: Int
    /// ε(t) before the taper (default ε0 = 1).
    public var diffusion: Diffusion
    /// The taper width in units of |α(α'β − αβ')| (default 0.1; see `Diffusion`).
    public var taperScale: Double
    /// Worker threads (results do not depend on it).
    public var threads: Int = Parallel.defaultThreads
    /// Samples per work unit (results do not depend on it: each sample's
    /// arithmetic and Brownian path are its own).
    public var chunkSize: Int = 256

    public init(method: Method = .heun, steps: Int = 200, diffusion: Diffusion = .constant(1), taperScale: Double = 0.1) {
        self.method = method
        self.steps = steps
        self.diffusion = diffusion
        self.taperScale = taperScale
    }

    /// - Throws: `.invalidArgument` naming the first bad field.
    public func validate() throws {
        guard steps >= 1, steps <= 1_000_000 else { throw FlowError.invalidArgument("SDE steps \(steps) must be in 1...10^6") }
        guard taperScale > 0, taperScale.isFinite else {
            throw FlowError.invalidArgument("SDE taper scale \(taperScale) must be finite and > 0")
        }
        try Limits.checkThreads(threads)
        guard chunkSize > 0 else { throw FlowError.invalidArgument("chunk size must be > 0") }
        if case .constant(let e) = diffusion, !(e >= 0 && e.isFinite) {
            throw FlowError.invalidArgument("diffusion ε0 = \(e) must be finite and ≥ 0")
        }
    }
}

/// What an SDE run returns.
public struct SDEResult: Sendable {
    /// X_1, `[n, d]`.
    public var points: Tensor
    /// Field evaluations per sample (every sample takes the same steps).
    public var evaluationsPerSample: Int
    /// Rows that became non-finite (kept as they are); empty when all finished.
    public var nonFiniteSamples: [Int]
}

/// Sampling with the SDE that has the same marginals ρ_t as the flow
/// (DESIGN.md §1):
///
///     dX = [v(t, X) + ε(t) s_t(X)] dt + √(2 ε(t)) dW,
///
/// with s from the velocity (`ScoreField`, Gaussian base) and ε tapered near
/// α = 0 (`Diffusion`). The grid is uniform; every step but the last is
/// Euler–Maruyama or stochastic Heun
///
///     X̃ = X + h b(t, X) + g ΔW,   X' = X + (h/2)[b(t, X) + b(t + h, X̃)] + g ΔW,
///
/// with b = v + ε s, ΔW = √h z, and g = √(2ε(t)) (Euler–Maruyama) or
/// √(ε(t) + ε(t + h)) (Heun: the trapezoidal variance of ∫√(2ε) dW). The last
/// step is a Heun step of the ODE dX = v dt.
///
/// **Reproducibility.** Sample i (of the whole run) draws its increments
/// from `RandomStream(seed, .brownian, firstIndex + i)`, d normals per step
/// in step order; nothing else is random (base points come from the caller
/// or from the base with `.baseSample`). Results are bit-identical for any
/// thread count. A run of rows [a, b) equals rows [a, b) of a larger run
/// with the same `firstIndex` origin, and any chunk size gives the same
/// samples, exactly for fields whose rows are computed independently (the
/// analytic mixture) and to GEMM rounding for networks (the batch size
/// changes BLAS blocking).
public struct SDESampler: Sendable {
    public let score: ScoreField
    public let options: SDEOptions

    /// - Throws: `.invalidArgument` for bad options.
    public init(score: ScoreField, options: SDEOptions = SDEOptions()) throws {
        try options.validate()
        self.score = score
        self.options = options
    }

    /// Draws `count` base samples (sample i from `RandomStream(seed,
    /// .baseSample, firstIndex + i)`, as `Flow.sample`) and integrates the
    /// SDE from t = 0 to 1.
    /// - Cost: `evaluationsPerSample` field evaluations of each sample:
    ///   (steps − 1) · (1 or 2) + 2.
    /// - Throws: as `integrate`.
    public func sample(count: Int, seed: UInt64, firstIndex: UInt64 = 0, progress: SolverProgress? = nil) throws -> SDEResult {
        let d = score.field.dimension
        var points = try HostMemory.array(repeating: Float(0), count: try checkCount(count), for: "SDESampler.sample")
        var bad: [Int] = []
        let perSample = try sampleBlocks(count: count, seed: seed, firstIndex: firstIndex, progress: progress) { range, r in
            points.replaceSubrange(range.lowerBound * d..<range.upperBound * d, with: r.points.scalars)
            bad += r.nonFiniteSamples
        }
        return SDEResult(points: Tensor(shape: [count, d], scalars: points), evaluationsPerSample: perSample,
                         nonFiniteSamples: bad)
    }

    /// `sample`, streamed: blocks of `blockSize` samples (a multiple of
    /// `options.chunkSize`, so results equal one `sample` call bit for bit)
    /// are drawn, integrated and handed to `consume` with their range of
    /// indices (relative to `firstIndex`) in order; `nonFiniteSamples` of a
    /// block are indices of the whole run. Memory stays bounded for any count.
    /// `progress` is called as for the ODE calls (`Transport`): on the
    /// calling thread, after 1, 2, 4 and then every 8 steps of each block,
    /// with the finished samples, the total and the mean fraction of [0, 1]
    /// covered; returning false stops with `.cancelled`.
    /// - Returns: the evaluations per sample.
    /// - Throws: as `integrate`, `.cancelled`, and whatever `consume` throws.
    public func sampleBlocks(count: Int, seed: UInt64, firstIndex: UInt64 = 0, progress: SolverProgress? = nil,
                             consume: (Range<Int>, SDEResult) throws -> Void) throws -> Int {
        _ = try checkCount(count)
        let d = score.field.dimension, b = score.base
        let grid = try _SDEGrid(self, from: 0)
        try Transport.forEachBlock(count: count, blockSize: blockSize, progress: progress) { range, blockProgress in
            var x0 = Tensor(shape: [range.count, d])
            for i in 0..<range.count {
                var rng = RandomStream(seed: seed, purpose: .baseSample, index: firstIndex &+ UInt64(range.lowerBound + i))
                for j in 0..<d { x0.scalars[i * d + j] = Float(b.mean[j] + b.standardDeviation[j] * rng.nextNormal()) }
            }
            var r = try run(grid, points: x0, seed: seed, firstIndex: firstIndex &+ UInt64(range.lowerBound),
                            progress: blockProgress)
            r.nonFiniteSamples = r.nonFiniteSamples.map { $0 + range.lowerBound }
            try consume(range, r)
        }
        return grid.evaluationsPerSample
    }

    /// Samples per block of `sampleBlocks`: 64 chunks, fewer for wide
    /// states (see `Transport.blockSize`).
    public var blockSize: Int { Transport.blockSize(chunk: chunkSize, width: score.field.dimension) }

    /// Samples per work unit: `options.chunkSize`, or fewer when the field
    /// prefers (`VelocityField.preferredChunkSize`; a U-Net: 1, widened in
    /// big blocks, see `run`).
    var chunkSize: Int { Swift.max(1, Swift.min(options.chunkSize, score.field.preferredChunkSize)) }

    /// count × d, checked. - Throws: `.invalidArgument` unless 0 ≤ count and count × d < 2^40.
    func checkCount(_ count: Int) throws -> Int {
        try Limits.checkSampleCount(count, dimension: score.field.dimension)
    }

    /// Integrates the SDE from time `t0` ∈ [0, 1) to 1 for `points` (`[n, d]`).
    /// - Throws: `.shapeMismatch`, `.nonFinite` (points, ε(t) from a
    ///   custom diffusion, or the schedule on the grid), `.invalidArgument`
    ///   (t0, negative ε).
    public func integrate(points: Tensor, from t0: Double, seed: UInt64, firstIndex: UInt64 = 0) throws -> SDEResult {
        let n = try Transport.checkPoints(points, dimension: score.field.dimension)
        let grid = try _SDEGrid(self, from: t0)
        let d = score.field.dimension
        var out = try HostMemory.array(repeating: Float(0), count: n * d, for: "SDESampler.integrate")
        var bad: [Int] = []
        var start = 0
        while start < n {
            let range = start..<Swift.min(n, start + blockSize)
            let r = try run(grid, points: points.rows(range), seed: seed, firstIndex: firstIndex &+ UInt64(range.lowerBound))
            out.replaceSubrange(range.lowerBound * d..<range.upperBound * d, with: r.points.scalars)
            bad += r.nonFiniteSamples.map { $0 + range.lowerBound }
            start = range.upperBound
        }
        return SDEResult(points: Tensor(shape: [n, d], scalars: out), evaluationsPerSample: grid.evaluationsPerSample,
                         nonFiniteSamples: bad)
    }

    /// Integrates one block held in memory on a prepared grid. The steps
    /// run in slices (1, 2, 4, then 8 steps; each sample's Brownian stream
    /// carries over), with `progress(finished, n, fraction)` on the calling
    /// thread after each slice, as the ODE integrator reports.
    /// - Throws: `.cancelled` when `progress` returns false.
    func run(_ g: _SDEGrid, points: Tensor, seed: UInt64, firstIndex: UInt64,
             progress: SolverProgress? = nil) throws -> SDEResult {
        let field = score.field, d = field.dimension
        let n = points.shape[0]
        let steps = g.steps, h = g.h, grid = g.grid, coefficients = g.coefficients, epsilon = g.epsilon
        let method = options.method, base = score.base
        var state = points.scalars
        let nonFinite = Mutex()
        var bad: [Int] = []
        var allStreams = (0..<n).map { RandomStream(seed: seed, purpose: .brownian, index: firstIndex &+ UInt64($0)) }
        // Per-thread scratch (network workspace, drift and noise buffers),
        // made in the first slice and reused by every later chunk and step.
        let scratch = _Pool { _SDEScratch(field.makeWorkspace()) }
        // One team of threads for all slices: no allocation per slice.
        // This block's chunks: `chunkSize`, widened as the ODE solvers widen
        // a U-Net's (`solverChunkSize`) in big blocks. Each sample has its
        // own Brownian stream, so values do not depend on them.
        let chunk = field.batchChunkSize > field.preferredChunkSize
            ? field.solverChunkSize(limit: options.chunkSize, count: n) : chunkSize
        let team = Parallel.Team(threads: Swift.min(options.threads, (n + chunk - 1) / chunk))
        var sliceStart = 0, sliceEnd = 0
        try state.withUnsafeMutableBufferPointer { all in try allStreams.withUnsafeMutableBufferPointer { everyStream in
          let allBase = all.baseAddress!, streamBase = everyStream.baseAddress!
          // Steps sliceStart..<sliceEnd of the chunk `range` (made once per
          // run: every slice passes the same closure to the team).
          let slice: (Int, Range<Int>) -> Void = { _, range in
              scratch.borrow { sc in
                let m = range.count, x = allBase + range.lowerBound * d
                let streams = streamBase + range.lowerBound
                let ws = sc.workspace, times = sc.times.reserve(m), s = sc.score.reserve(d)
                let b1 = sc.b1.reserve(m * d), b2 = sc.b2.reserve(m * d)
                let predictor = sc.predictor.reserve(m * d), noise = sc.noise.reserve(m * d)
                /// drift[r] = v + ε s at time index k for the rows of `at`.
                func drift(_ k: Int, _ at: UnsafeMutablePointer<Float>, _ ob: UnsafeMutablePointer<Float>, score useScore: Bool) {
                    for r in 0..<m { times[r] = grid[k] }
                    field.velocity(times: UnsafeBufferPointer(start: times, count: m),
                                   points: UnsafeBufferPointer(start: at, count: m * d),
                                   into: UnsafeMutableBufferPointer(start: ob, count: m * d), workspace: ws)
                    guard useScore, epsilon[k] > 0 else { return }
                    let c = coefficients[k], e = epsilon[k]
                    for r in 0..<m {
                        base.scoreFromVelocity(c, x: at + r * d, v: ob + r * d, into: s, scale: e)
                        for j in 0..<d { ob[r * d + j] += s[j] }
                    }
                }
                for k in sliceStart..<sliceEnd {
                    let last = k == steps - 1
                    let g: Double
                    if last { g = 0 }
                    else if method == .eulerMaruyama { g = (2 * epsilon[k]).squareRoot() }
                    else { g = (epsilon[k] + epsilon[k + 1]).squareRoot() }
                    if g > 0 {
                        let scale = g * h.squareRoot()
                        for r in 0..<m { for j in 0..<d { noise[r * d + j] = Float(scale * streams[r].nextNormal()) } }
                    } else {
                        for i in 0..<(m * d) { noise[i] = 0 }
                    }
                    drift(k, x, b1, score: !last)
                    let hf = Float(h)
                    if method == .eulerMaruyama && !last {
                        for i in 0..<(m * d) { x[i] += hf * b1[i] + noise[i] }
                        continue
                    }
                    for i in 0..<(m * d) { predictor[i] = x[i] + hf * b1[i] + noise[i] }
                    drift(k + 1, predictor, b2, score: !last)
                    for i in 0..<(m * d) { x[i] += 0.5 * hf * (b1[i] + b2[i]) + noise[i] }
                }
                if sliceEnd == steps {
                    for r in 0..<m where !(0..<d).allSatisfy({ x[r * d + $0].isFinite }) {
                        nonFinite.withLock { bad.append(range.lowerBound + r) }
                    }
                }
              }
          }
          while sliceStart < steps {
              // Without a progress callback, one slice: each chunk runs all its steps at once.
              sliceEnd = progress == nil ? steps : Swift.min(steps, sliceStart < 4 ? Swift.max(1, 2 * sliceStart) : sliceStart + 8)
              team.forEachChunk(count: n, chunkSize: chunk, slice)
              sliceStart = sliceEnd
              if let progress, !progress(sliceEnd == steps ? n : 0, n, Double(sliceEnd) / Double(steps)) {
                  throw FlowError.cancelled("SDE sampling stopped by the progress callback at step \(sliceEnd) of \(steps)")
              }
          }
        } }
        return SDEResult(points: Tensor(shape: [n, d], scalars: state),
                         evaluationsPerSample: g.evaluationsPerSample, nonFiniteSamples: bad.sorted())
    }
}

extension Flow {
    /// `count` samples by the SDE with the flow's marginals (see
    /// `SDESampler`); requires a Gaussian base and a known schedule.
    /// - Throws: `.unsupported` (no Gaussian base or schedule), as `SDESampler`.
    public func sampleSDE(count: Int, seed: UInt64, options: SDEOptions = SDEOptions(),
                          firstIndex: UInt64 = 0, progress: SolverProgress? = nil) throws -> SDEResult {
        try SDESampler(score: scoreField(), options: options).sample(count: count, seed: seed, firstIndex: firstIndex,
                                                                     progress: progress)
    }
}

/// The time grid of an SDE run with the schedule's coefficients and the
/// tapered diffusion on it, computed (and the host's ε(t) called) once per run.
struct _SDEGrid {
    let steps: Int, h: Double
    let grid: [Double]
    let coefficients: [InterpolantCoefficients]
    /// ε(t_k)·τ(t_k).
    let epsilon: [Double]
    let evaluationsPerSample: Int

    init(_ sampler: SDESampler, from t0: Double) throws {
        guard t0 >= 0, t0 < 1 else { throw FlowError.invalidArgument("SDE start time \(t0) must be in [0, 1)") }
        let options = sampler.options
        steps = options.steps
        h = (1 - t0) / Double(steps)
        let steps = self.steps, h = self.h
        grid = (0...steps).map { $0 == steps ? 1.0 : t0 + Double($0) * h }
        coefficients = try grid.map { try sampler.score.schedule.finiteCoefficients(at: $0) }
        var epsilon = [Double](repeating: 0, count: steps + 1)
        for k in 0..<steps {
            let e = options.diffusion.value(at: grid[k])
            guard e.isFinite else { throw FlowError.nonFinite("diffusion ε(\(grid[k])) = \(e)") }
            guard e >= 0 else { throw FlowError.invalidArgument("diffusion ε(\(grid[k])) = \(e) must be ≥ 0") }
            let s = abs(ScoreField.singularFactor(coefficients[k]))
            epsilon[k] = e * Swift.min(1, s / options.taperScale)
        }
        self.epsilon = epsilon
        evaluationsPerSample = (steps - 1) * (options.method == .eulerMaruyama ? 1 : 2) + 2
    }
}

/// One thread's scratch of an SDE run: the field's workspace and `[chunk, d]`
/// Float buffers for times, drifts, the Heun predictor, the noise and one
/// row's score.
final class _SDEScratch {
    let workspace: FieldWorkspace
    let b1 = FloatBuffer(), b2 = FloatBuffer(), predictor = FloatBuffer(), noise = FloatBuffer(), score = FloatBuffer()
    let times = DoubleBuffer()
    init(_ workspace: FieldWorkspace) { self.workspace = workspace }
}

