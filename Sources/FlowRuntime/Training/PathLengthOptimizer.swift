#if canImport(Glibc)
import Glibc
#endif

/// Settings of the outer (schedule) player of `PathLengthOptimizer`.
public struct PathLengthConfiguration: Sendable, Equatable {
    /// Adam step size of the Fourier coefficients (default 0.001). The
    /// ascent must be slow next to the network: a schedule that moves
    /// faster than the network can follow is steered toward paths where the
    /// network is wrong (G at a stale network overestimates min G), and the
    /// true path length grows while the estimate shrinks.
    public var learningRate: Double
    /// Adam constants of the coefficient updates.
    public var optimizer: OptimizerConfiguration
    /// Network-only updates before the schedule starts to move (default 300),
    /// so that the first ascent directions come from a trained velocity.
    public var warmupSteps: Int
    /// Network updates per schedule update after the warmup (default 8).
    public var networkStepsPerUpdate: Int
    /// Samples (t, x0, x1) per schedule update (default: the trainer's batch size).
    public var batchSize: Int?
    /// Coefficients are kept in [−bound, bound] (default 2), a guard against
    /// the ascent running away while the network lags.
    public var coefficientBound: Double

    public init(learningRate: Double = 0.001, optimizer: OptimizerConfiguration = OptimizerConfiguration(),
                warmupSteps: Int = 300, networkStepsPerUpdate: Int = 8, batchSize: Int? = nil,
                coefficientBound: Double = 2) {
        self.learningRate = learningRate
        self.optimizer = optimizer
        self.warmupSteps = warmupSteps
        self.networkStepsPerUpdate = networkStepsPerUpdate
        self.batchSize = batchSize
        self.coefficientBound = coefficientBound
    }

    /// - Throws: `.invalidArgument` naming the first bad field.
    public func validate() throws {
        guard learningRate > 0, learningRate.isFinite else {
            throw FlowError.invalidArgument("path-length learning rate \(learningRate) must be finite and > 0")
        }
        try optimizer.validate()
        guard warmupSteps >= 0 else { throw FlowError.invalidArgument("warmup steps \(warmupSteps) must be ≥ 0") }
        guard networkStepsPerUpdate >= 1 else {
            throw FlowError.invalidArgument("network steps per update \(networkStepsPerUpdate) must be ≥ 1")
        }
        if let b = batchSize, !(1...(1 << 24)).contains(b) {
            throw FlowError.invalidArgument("path-length batch size \(b) must be in 1...2^24")
        }
        guard coefficientBound > 0, coefficientBound.isFinite else {
            throw FlowError.invalidArgument("coefficient bound \(coefficientBound) must be finite and > 0")
        }
    }
}

/// One step of `PathLengthOptimizer`.
public struct PathLengthReport: Sendable {
    /// Updates of the network so far.
    public var networkSteps: Int
    /// Updates of the schedule so far.
    public var scheduleSteps: Int
    /// Kinetic-energy estimate ∫ E|v̂(t, x_t)|² dt (t uniform) on the last
    /// schedule batch; the path length the optimiser shortens. Nil during
    /// the warmup.
    public var kineticEnergy: Double?
    /// The quadratic loss G on that batch (≈ −kinetic energy at the optimum).
    public var quadraticLoss: Double?
    /// The network's last minibatch losses.
    public var networkLoss: LossReport
    /// The schedule after this step.
    public var schedule: FourierSchedule
}

/// Path-length optimisation (DESIGN.md §1; Albergo & Vanden-Eijnden 2023,
/// §2.4): the max–min problem
///
///     max_θ min_v̂ G(v̂; θ),   min_v̂ G = −∫∫ |v_t|² ρ_t dx dt,
///
/// over the coefficients θ = (a, b) of a `FourierSchedule`, solved by
/// alternating descent on the network (a `Trainer` step on the current
/// schedule) and Adam ascent on θ. By Benamou–Brenier, the value approaches
/// −W2²(ρ0, ρ1) when the optimal path is reachable, so the kinetic energy
/// reported shrinks toward W2².
///
/// The ascent direction is ∂G/∂θ at the current network (the envelope
/// theorem: at the inner minimum it is the gradient of min_v̂ G). With
/// x_t = α x0 + β x1, ∂_tI = α' x0 + β' x1 and J = ∂v̂/∂x,
///
///     ∂G/∂a_k = E[ sin(kπt) · 2(v̂ − ∂_tI)·(J x0) − kπ cos(kπt) · 2 v̂·x0 ]
///     ∂G/∂b_k = E[ sin(kπt) · 2(v̂ − ∂_tI)·(J x1) − kπ cos(kπt) · 2 v̂·x1 ],
///
/// with t uniform (the path length weights all times equally, whatever
/// time density the network is trained with). J x0 and J x1 come from one
/// forward-mode pass with two tangents.
///
/// Randomness: schedule batches use their own seed derived from the
/// trainer's (purpose `.custom`), sample k of schedule step s at index
/// s · batch + k, so runs are reproducible and independent of threads.
public final class PathLengthOptimizer {
    /// The network trainer (its `loss.schedule` follows `schedule`).
    public let trainer: Trainer
    public let configuration: PathLengthConfiguration
    /// The current schedule.
    public internal(set) var schedule: FourierSchedule
    /// Schedule updates so far.
    public private(set) var scheduleSteps = 0
    /// The last step's report, if any.
    public private(set) var lastReport: PathLengthReport?

    var firstMoment: [Float], secondMoment: [Float], parameters: [Float]

    /// - Parameters:
    ///   - graph, data, base, trainerConfiguration: as for `Trainer`
    ///     (`.stream` data is not supported: the schedule player draws its
    ///     own x1).
    ///   - schedule: the starting coefficients (`FourierSchedule(terms: K)`
    ///     is the linear schedule).
    ///   - timeDistribution: the network's training time density.
    ///   - metadata: extra metadata for exported models (as `Trainer`).
    ///
    /// The flow trained so far, with the current schedule, is
    /// `trainer.flow()` (the trainer's loss follows `schedule`).
    /// - Throws: as `Trainer.init`; `.invalidArgument` for a bad
    ///   configuration, no Fourier terms, or streaming data.
    public init(graph: Graph, data: TrainingData, base: (any SampleSource)? = nil, schedule: FourierSchedule,
                timeDistribution: TimeDistribution = .uniform,
                trainerConfiguration: TrainerConfiguration = TrainerConfiguration(),
                configuration: PathLengthConfiguration = PathLengthConfiguration(),
                metadata: [String: String] = [:]) throws {
        try configuration.validate()
        guard schedule.terms > 0 else { throw FlowError.invalidArgument("path-length optimisation needs at least one Fourier term") }
        if case .stream = data {
            throw FlowError.invalidArgument("path-length optimisation needs in-memory or sampled data, not a stream")
        }
        trainer = try Trainer(graph: graph, data: data, base: base,
                              loss: InterpolantLoss(schedule: schedule, timeDistribution: timeDistribution),
                              configuration: trainerConfiguration, metadata: metadata)
        self.configuration = configuration
        self.schedule = schedule
        parameters = (schedule.alphaCoefficients + schedule.betaCoefficients).map(Float.init)
        firstMoment = [Float](repeating: 0, count: parameters.count)
        secondMoment = firstMoment
    }

    /// `networkStepsPerUpdate` network updates (one during the warmup), then,
    /// after the warmup, one ascent update of the schedule.
    /// - Throws: `.nonFinite` when a loss or gradient is not finite (the
    ///   schedule is then left unchanged); errors of `Trainer.step()`.
    /// - Cost: network updates plus, for a schedule update, one forward pass
    ///   with two tangents (≈ 3 forward passes) over the schedule batch.
    @discardableResult
    public func step() throws -> PathLengthReport {
        let warm = trainer.stepCount < configuration.warmupSteps
        var loss = LossReport.zero
        for _ in 0..<(warm ? 1 : configuration.networkStepsPerUpdate) { loss = try trainer.step() }
        var report = PathLengthReport(networkSteps: trainer.stepCount, scheduleSteps: scheduleSteps,
                                      kineticEnergy: nil, quadraticLoss: nil, networkLoss: loss, schedule: schedule)
        if !warm {
            let (gradient, energy, g) = try scheduleGradient()
            let k = schedule.terms
            var descent = gradient.map { Float(-$0) }  // ascent on G = descent on −G
            parameters.withUnsafeMutableBufferPointer { p in
                descent.withUnsafeMutableBufferPointer { d in
                    firstMoment.withUnsafeMutableBufferPointer { m in
                        secondMoment.withUnsafeMutableBufferPointer { v in
                            configuration.optimizer.update(parameters: p.baseAddress!, gradients: d.baseAddress!,
                                                           firstMoment: m.baseAddress!, secondMoment: v.baseAddress!,
                                                           count: p.count, learningRate: configuration.learningRate,
                                                           k: scheduleSteps + 1)
                        }
                    }
                }
            }
            let bound = Float(configuration.coefficientBound)
            for i in parameters.indices { parameters[i] = Swift.min(bound, Swift.max(-bound, parameters[i])) }
            schedule = try FourierSchedule(alphaCoefficients: parameters[0..<k].map(Double.init),
                                           betaCoefficients: parameters[k...].map(Double.init))
            trainer.loss = InterpolantLoss(schedule: schedule, timeDistribution: trainer.loss.timeDistribution)
            scheduleSteps += 1
            report.scheduleSteps = scheduleSteps
            report.kineticEnergy = energy
            report.quadraticLoss = g
            report.schedule = schedule
        }
        lastReport = report
        return report
    }

    /// Runs `steps` calls of `step()`, calling `progress` after each;
    /// returning false stops with `.cancelled`.
    public func fit(steps: Int, progress: ((PathLengthReport) -> Bool)? = nil) throws {
        guard steps >= 0 else { throw FlowError.invalidArgument("steps \(steps) must be ≥ 0") }
        for _ in 0..<steps {
            let r = try step()
            if let progress, !progress(r) {
                throw FlowError.cancelled("path-length optimisation stopped by the progress callback at step \(r.networkSteps)")
            }
        }
    }

    /// The network with its current raw weights (the inner player).
    func rawModel() throws -> Model {
        var g = trainer.graph
        g.parameters = trainer.rawParameters
        return try Model(graph: g)
    }

    /// ∂G/∂(a, b) (2K values), the kinetic-energy estimate E|v̂|² and G, on
    /// the schedule batch of the current schedule step.
    /// `field` replaces the network (tests use the exact velocity).
    func scheduleGradient(field: (any VelocityField)? = nil) throws -> (gradient: [Double], kineticEnergy: Double, quadratic: Double) {
        let model: any VelocityField = try field ?? rawModel()
        let tc = trainer.configuration, d = trainer.dimension, k = schedule.terms
        let b = configuration.batchSize ?? tc.batchSize, cs = trainer.effectiveChunkSize
        let seed = Trainer.derivedSeed(tc.seed, .custom)
        let first = UInt64(scheduleSteps) &* UInt64(b)
        let batch = PathLengthBatch(trainer: trainer, seed: seed)
        let chunkCount = (b + cs - 1) / cs
        // Per chunk: 2K gradient sums, then Σ|v̂|², Σ G.
        var partial = [[Double]](repeating: [], count: chunkCount)
        let schedule = self.schedule
        partial.withUnsafeMutableBufferPointer { out in
            Parallel.forEachChunk(count: b, chunkSize: cs, threads: tc.threads) { c, range in
                let n = range.count
                let (times, x0, x1) = batch.draw(first: first &+ UInt64(range.lowerBound), count: n)
                var xt = [Float](repeating: 0, count: n * d), u = xt, tangents = [Float](repeating: 0, count: n * 2 * d)
                for i in 0..<n {
                    let co = schedule.coefficients(at: times[i])
                    for j in 0..<d {
                        let a = x0[i * d + j], e = x1[i * d + j]
                        xt[i * d + j] = Float(co.alpha) * a + Float(co.beta) * e
                        u[i * d + j] = Float(co.alphaDot) * a + Float(co.betaDot) * e
                        tangents[(2 * i) * d + j] = a
                        tangents[(2 * i + 1) * d + j] = e
                    }
                }
                var v = [Float](repeating: 0, count: n * d), jv = tangents
                let ws = model.makeWorkspace()
                times.withUnsafeBufferPointer { tb in xt.withUnsafeBufferPointer { xb in tangents.withUnsafeBufferPointer { tg in
                    v.withUnsafeMutableBufferPointer { vb in jv.withUnsafeMutableBufferPointer { jb in
                        model.velocityJVP(times: tb, points: xb, tangents: tg, k: 2, into: vb, products: jb, workspace: ws)
                    } }
                } } }
                var sums = [Double](repeating: 0, count: 2 * k + 2)
                for i in 0..<n {
                    var ra = 0.0, rb = 0.0, va = 0.0, vb = 0.0, kinetic = 0.0, g = 0.0
                    for j in 0..<d {
                        let vi = Double(v[i * d + j]), ui = Double(u[i * d + j])
                        let r = 2 * (vi - ui)
                        ra += r * Double(jv[(2 * i) * d + j])
                        rb += r * Double(jv[(2 * i + 1) * d + j])
                        va += 2 * vi * Double(x0[i * d + j])
                        vb += 2 * vi * Double(x1[i * d + j])
                        kinetic += vi * vi
                        g += vi * vi - 2 * ui * vi
                    }
                    let (value, rate) = schedule.coefficientGradients(at: times[i])
                    for m in 0..<k {
                        sums[m] += value[m] * ra - rate[m] * va
                        sums[k + m] += value[m] * rb - rate[m] * vb
                    }
                    sums[2 * k] += kinetic
                    sums[2 * k + 1] += g
                }
                out[c] = sums
            }
        }
        var total = [Double](repeating: 0, count: 2 * k + 2)
        for sums in partial { for i in total.indices { total[i] += sums[i] } }
        let mean = total.map { $0 / Double(b) }
        guard mean.allSatisfy(\.isFinite) else {
            throw FlowError.nonFinite("the schedule gradient at schedule step \(scheduleSteps) is not finite")
        }
        return (Array(mean[0..<(2 * k)]), mean[2 * k], mean[2 * k + 1])
    }
}

/// The (t, x0, x1) draws of the schedule player: t uniform, x0 from the
/// trainer's base, x1 from its training rows or data source, all keyed by
/// (seed, global sample index).
struct PathLengthBatch: @unchecked Sendable {
    let base: any SampleSource
    let data: TrainingData
    let rows: [Int]
    let dimension: Int
    let seed: UInt64

    init(trainer: Trainer, seed: UInt64) {
        base = trainer.base
        data = trainer.data
        rows = trainer.trainRows
        dimension = trainer.dimension
        self.seed = seed
    }

    func draw(first: UInt64, count n: Int) -> (times: [Double], x0: [Float], x1: [Float]) {
        let d = dimension
        var times = [Double](repeating: 0, count: n)
        for i in 0..<n {
            var r = RandomStream(seed: seed, purpose: .trainingTime, index: first &+ UInt64(i))
            times[i] = r.nextUniform()
        }
        var x0 = [Float](repeating: 0, count: n * d), x1 = x0
        x0.withUnsafeMutableBufferPointer { base.sample(seed: Trainer.derivedSeed(seed, .trainingBase), firstIndex: first, into: $0) }
        switch data {
        case .samples(let x):
            for i in 0..<n {
                var r = RandomStream(seed: seed, purpose: .minibatch, index: first &+ UInt64(i))
                let row = rows[r.nextInt(below: rows.count)]
                for j in 0..<d { x1[i * d + j] = x[row * d + j] }
            }
        case .source(let source, _):
            x1.withUnsafeMutableBufferPointer { source.sample(seed: Trainer.derivedSeed(seed, .dataset), firstIndex: first, into: $0) }
        case .stream:
            break  // refused by PathLengthOptimizer.init
        }
        return (times, x0, x1)
    }
}

/// Path-length diagnostics of any velocity field and schedule.
public enum PathLength {
    /// Monte Carlo estimate of the kinetic energy ∫_0^1 E|v̂(t, x_t)|² dt
    /// with t uniform and x_t = α x0 + β x1 (x0 from `base`, x1 from `data`,
    /// `count` independent draws from `seed`), and its standard error.
    /// For the exact interpolant velocity this is the path's action; it is
    /// ≥ W2²(ρ0, ρ1), with equality on an optimal path.
    /// - Cost: one field evaluation of `count` samples.
    /// - Throws: `.shapeMismatch` when dimensions differ, `.invalidArgument` for count ≤ 0.
    public static func kineticEnergy(field: any VelocityField, schedule: any Schedule, base: any SampleSource,
                                     data: any SampleSource, count: Int, seed: UInt64) throws -> (mean: Double, standardError: Double) {
        let d = field.dimension
        guard base.dimension == d, data.dimension == d else {
            throw FlowError.shapeMismatch("kinetic energy: base (\(base.dimension)), data (\(data.dimension)) and field (\(d)) dimensions differ")
        }
        guard count > 1 else { throw FlowError.invalidArgument("kinetic energy: count \(count) must be > 1") }
        var times = [Double](repeating: 0, count: count)
        for i in 0..<count {
            var r = RandomStream(seed: seed, purpose: .trainingTime, index: UInt64(i))
            times[i] = r.nextUniform()
        }
        let x0 = base.samples(count: count, seed: Trainer.derivedSeed(seed, .trainingBase))
        let x1 = data.samples(count: count, seed: Trainer.derivedSeed(seed, .dataset))
        var xt = [Float](repeating: 0, count: count * d), v = xt
        for i in 0..<count {
            let c = schedule.coefficients(at: times[i])
            for j in 0..<d { xt[i * d + j] = Float(c.alpha) * x0.scalars[i * d + j] + Float(c.beta) * x1.scalars[i * d + j] }
        }
        let ws = field.makeWorkspace()
        times.withUnsafeBufferPointer { t in xt.withUnsafeBufferPointer { x in v.withUnsafeMutableBufferPointer {
            field.velocity(times: t, points: x, into: $0, workspace: ws)
        } } }
        var s = 0.0, s2 = 0.0
        for i in 0..<count {
            var e = 0.0
            for j in 0..<d { e += Double(v[i * d + j]) * Double(v[i * d + j]) }
            s += e; s2 += e * e
        }
        let mean = s / Double(count)
        return (mean, ((s2 / Double(count) - mean * mean) / Double(count - 1)).squareRoot())
    }

    /// The kinetic energy of the flow itself, E[∫_0^1 |v̂(t, X_t)|² dt] along
    /// ODE trajectories from `count` base samples (sample i from
    /// `RandomStream(seed, .baseSample, i)`), by `steps` RK4 steps and the
    /// trapezoidal rule on the step grid. Unlike `kineticEnergy` it needs no
    /// data and no schedule, so it also measures flows trained with a
    /// mini-batch coupling (whose marginals are not the independent
    /// interpolant's). For the exact velocity of an optimal path it is W2².
    /// - Cost: 4 · steps field evaluations of `count` samples.
    /// - Throws: `.shapeMismatch`, `.invalidArgument` (count ≤ 1, steps ≤ 0).
    public static func flowKineticEnergy(field: any VelocityField, base: any SampleSource, count: Int, seed: UInt64,
                                         steps: Int = 100) throws -> (mean: Double, standardError: Double) {
        let d = field.dimension
        guard base.dimension == d else { throw FlowError.shapeMismatch("kinetic energy: base dimension \(base.dimension) differs from the field's \(d)") }
        guard count > 1, steps > 0 else { throw FlowError.invalidArgument("kinetic energy: count \(count) must be > 1 and steps \(steps) > 0") }
        var x = [Float](repeating: 0, count: count * d)
        x.withUnsafeMutableBufferPointer { base.sample(seed: seed, firstIndex: 0, into: $0) }
        let ws = field.makeWorkspace(), h = 1 / Double(steps)
        var times = [Double](repeating: 0, count: count)
        var k1 = x, k2 = x, k3 = x, k4 = x, stage = x
        var energy = [Double](repeating: 0, count: count)
        func evaluate(_ t: Double, _ at: [Float], _ out: inout [Float]) {
            for i in 0..<count { times[i] = t }
            times.withUnsafeBufferPointer { tb in at.withUnsafeBufferPointer { xb in out.withUnsafeMutableBufferPointer {
                field.velocity(times: tb, points: xb, into: $0, workspace: ws)
            } } }
        }
        func accumulate(_ v: [Float], weight: Double) {
            for i in 0..<count {
                var e = 0.0
                for j in 0..<d { e += Double(v[i * d + j]) * Double(v[i * d + j]) }
                energy[i] += weight * e
            }
        }
        let hf = Float(h)
        for k in 0..<steps {
            let t = Double(k) * h
            evaluate(t, x, &k1)
            accumulate(k1, weight: k == 0 ? 0.5 * h : h)
            for i in stage.indices { stage[i] = x[i] + 0.5 * hf * k1[i] }
            evaluate(t + 0.5 * h, stage, &k2)
            for i in stage.indices { stage[i] = x[i] + 0.5 * hf * k2[i] }
            evaluate(t + 0.5 * h, stage, &k3)
            for i in stage.indices { stage[i] = x[i] + hf * k3[i] }
            evaluate(t + h, stage, &k4)
            for i in x.indices { x[i] += hf / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]) }
        }
        evaluate(1, x, &k1)
        accumulate(k1, weight: 0.5 * h)
        let mean = energy.reduce(0, +) / Double(count)
        let variance = energy.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(count - 1)
        return (mean, (variance / Double(count)).squareRoot())
    }
}
