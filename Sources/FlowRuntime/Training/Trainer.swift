#if canImport(Glibc)
import Glibc
#endif

/// Trains a velocity network with the quadratic interpolant loss
/// (`InterpolantLoss`) — no ODE is ever solved.
///
/// One update: draw a minibatch (times, base samples x0, data x1, all keyed
/// by (seed, purpose, global sample index)); cut it into fixed chunks of
/// `chunkSize` samples; on up to `threads` threads, each chunk runs forward
/// and backward through the graph on its own workspace; then, on the same
/// threads over fixed blocks of the flat parameter range (`TrainerState`),
/// chunk gradients are summed in chunk order with the norm's partial sums,
/// and after one serial sum of those partials, clipping, Adam/AdamW and the
/// EMA update run block by block, and the packed weights are rebuilt.
/// Because neither the chunking, the blocks nor any summation order depends
/// on the thread count, the weights after any number of steps are
/// bit-identical for 1, 2 or 8 threads, and a run resumed from a checkpoint
/// continues exactly as the uninterrupted run.
///
/// Works on any `Graph`: native MLPs and ONNX-imported networks alike.
/// A conditional network (a context input) trains on pairs (x_i, c_i):
/// `.samples` data with a parallel contexts array, the loss unchanged with
/// c_i passed through (DESIGN.md §5); optional label dropout
/// (`TrainerConfiguration.labelDropout`) for guidance.
/// A trainer is used from one thread at a time; `model()` returns an
/// immutable snapshot (EMA weights) that stays valid while training goes on.
public final class Trainer {
    public let configuration: TrainerConfiguration
    /// Settable inside the module so that `PathLengthOptimizer` can move the
    /// schedule between updates (the held-out set keeps its initial schedule).
    public internal(set) var loss: InterpolantLoss {
        didSet { cachedModel = nil }  // the model's metadata records the schedule
    }
    /// ρ0, sampled for x0.
    public let base: any SampleSource
    /// The state dimension d.
    public let dimension: Int
    /// Metadata given to exported models: the caller's, plus
    /// `flowrt.interpolant`, `flowrt.base` and `flowrt.training.*` (batch size,
    /// seed; `model()` adds steps and the held-out loss).
    public let metadata: [String: String]

    let data: TrainingData
    /// Contexts `[n, m]` parallel to `.samples` rows (conditional networks).
    let contexts: [Float]?
    /// Context values per sample m (0: unconditional).
    public let contextDimension: Int
    /// The null label of label dropout (nil without dropout).
    let nullLabel: Float?
    /// Held-out contexts `[held-out, m]`, parallel to `heldOutPoints`.
    let heldOutContexts: [Float]
    let differentiator: GraphDifferentiator
    /// Indices of the trainable parameters in `graph.parameters`.
    let trainable: [Int]
    /// Rows of `.samples` data used for training.
    let trainRows: [Int]
    /// Fixed held-out evaluation set: times, x_t and ∂_tI.
    let heldOutTimes: [Double]
    let heldOutPoints: [Float]
    let heldOutTargets: [Float]
    /// Summed gradient, Adam moments and EMA weights (flat, aligned with
    /// `trainable`), and the update's fixed blocks.
    let state: TrainerState
    var chunks: [TrainingChunk] = []
    var cachedModel: Model?
    var streamBatch: [Float] = []

    /// Updates done so far.
    public internal(set) var stepCount = 0
    /// Mean losses of the last minibatch, if a step was made.
    public internal(set) var lastLoss: LossReport?
    /// Held-out losses (EMA weights) of the last evaluation, if any.
    public internal(set) var lastHeldOutLoss: LossReport?
    /// The learning rate of the last update.
    public internal(set) var lastLearningRate = 0.0
    /// Mini-batch OT pairing of x0 and x1 inside each chunk (nil = the
    /// independent coupling, the default). See `MinibatchCoupling`.
    public var coupling: MinibatchCoupling? = nil
    /// The step `lastHeldOutLoss` was evaluated at (−1: never).
    var heldOutStep = -1

    /// - Parameters:
    ///   - graph: the network to train (its parameters are the start point).
    ///   - data: where x1 comes from; `.samples` must hold rows of d floats.
    ///   - contexts: for a conditional network (required then), the
    ///     context of each `.samples` row, `[n, m]` (class labels as floats
    ///     in 0..<classCount); nil otherwise.
    ///   - base: ρ0 (default N(0, I)); any `SampleSource`, e.g. an
    ///     `EmpiricalDensity` for data-to-data transport.
    ///   - loss: schedule and time density (default trig, uniform).
    ///   - metadata: extra metadata for exported models.
    /// - Throws: `.invalidArgument` for a bad configuration or too few
    ///   samples, missing contexts for a conditional network (or contexts
    ///   for an unconditional one), labels that are not classes, label
    ///   dropout without a label network; `.unsupported` for a conditional
    ///   network with `.source`/`.stream` data; `.shapeMismatch` when
    ///   dimensions disagree, `.nonFinite`
    ///   for NaN/Inf data or a schedule not finite at a held-out time,
    ///   `.invalidModel` for an inconsistent graph.
    /// - Cost: builds the held-out set (O(held-out · d)).
    public init(graph: Graph, data: TrainingData, contexts: [Float]? = nil, base: (any SampleSource)? = nil,
                loss: InterpolantLoss = InterpolantLoss(), configuration: TrainerConfiguration = TrainerConfiguration(),
                metadata: [String: String] = [:]) throws {
        try configuration.validate()
        try loss.timeDistribution.validate()
        let d = graph.dimension
        let base = base ?? StandardNormal(dimension: d)
        guard base.dimension == d else {
            throw FlowError.shapeMismatch("the base density has dimension \(base.dimension) but the network \(d)")
        }
        self.configuration = configuration
        self.loss = loss
        self.base = base
        self.dimension = d
        self.data = data
        let cm = graph.contextDimension
        self.contextDimension = cm
        if cm == 0 {
            if contexts != nil {
                throw FlowError.invalidArgument("contexts were given, but the network is unconditional (no context input): pass none")
            }
            if configuration.labelDropout > 0 {
                throw FlowError.invalidArgument("label dropout \(configuration.labelDropout) needs a label-conditional network")
            }
        } else {
            guard case .samples(let x) = data else {
                throw FlowError.unsupported("a conditional network trains on in-memory samples with contexts; streamed or sampled data cannot carry contexts yet")
            }
            guard let contexts else {
                throw FlowError.invalidArgument("the network is conditional (\(cm) context value\(cm == 1 ? "" : "s") per sample): pass contexts [n, \(cm)], one row per training sample")
            }
            let n = x.count / Swift.max(d, 1)
            guard contexts.count == n * cm else {
                throw FlowError.shapeMismatch("contexts hold \(contexts.count) values; \(n) training samples need [\(n), \(cm)] = \(n * cm)")
            }
            if let bad = contexts.firstNonFiniteIndex {
                throw FlowError.nonFinite("context of training row \(bad / cm) is not finite")
            }
            if let classes = graph.classCount, let bad = contexts.firstIndex(where: { !($0 >= 0 && $0 < Float(classes) && $0 == $0.rounded(.down)) }) {
                throw FlowError.invalidArgument("label \(contexts[bad]) of training row \(bad) is not a class in 0..<\(classes)")
            }
            if configuration.labelDropout > 0 {
                guard let classes = graph.classCount, classes >= 2 else {
                    throw FlowError.invalidArgument("label dropout \(configuration.labelDropout) needs a label-conditional network with at least 2 classes (the last is the null label)")
                }
            }
        }
        self.contexts = contexts
        self.nullLabel = configuration.labelDropout > 0 ? graph.classCount.map { Float($0 - 1) } : nil
        self.differentiator = try GraphDifferentiator(graph: graph)
        self.trainable = differentiator.trainableIndices
        guard !trainable.isEmpty else { throw FlowError.invalidArgument("the network has no trainable parameters") }
        var meta = metadata
        meta = ScheduleMetadata.recording(loss.schedule, in: meta)
        meta["flowrt.base"] = base is StandardNormal ? "standard_normal" : base is DiagonalNormal ? "diagonal_normal" : "custom"
        meta["flowrt.training.batch_size"] = String(configuration.batchSize)
        meta["flowrt.training.seed"] = String(configuration.seed)
        self.metadata = meta

        // Held-out x1 rows and training rows.
        let seed = configuration.seed
        var heldOutRows: [Float] = []
        var heldOutContextRows: [Float] = []
        switch data {
        case .samples(let x):
            guard x.count % d == 0, !x.isEmpty else {
                throw FlowError.shapeMismatch("training data has \(x.count) values, not a non-empty multiple of dimension \(d)")
            }
            if let bad = x.firstNonFiniteIndex {
                throw FlowError.nonFinite("training data row \(bad / d), coordinate \(bad % d) is \(x[bad])")
            }
            let n = x.count / d
            guard n <= Int(UInt32.max) else { throw FlowError.invalidArgument("more than 2^32 − 1 training rows") }
            var order = Array(0..<n)
            var rng = RandomStream(seed: seed, purpose: .split, index: 0)
            for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
            let held = Int(Double(n) * configuration.heldOutFraction)
            guard n - held >= 1 else { throw FlowError.invalidArgument("no training rows left after the held-out split of \(n)") }
            trainRows = Array(order[held...])
            for r in order[..<Swift.min(held, configuration.heldOutLimit)] {
                heldOutRows += x[(r * d)..<((r + 1) * d)]
                if let contexts { heldOutContextRows += contexts[(r * cm)..<((r + 1) * cm)] }
            }
        case .source(let source, let heldOut):
            guard source.dimension == d else {
                throw FlowError.shapeMismatch("the data source has dimension \(source.dimension) but the network \(d)")
            }
            guard heldOut >= 0 else { throw FlowError.invalidArgument("held-out count \(heldOut) must be ≥ 0") }
            trainRows = []
            heldOutRows = [Float](repeating: 0, count: heldOut * d)
            heldOutRows.withUnsafeMutableBufferPointer {
                source.sample(seed: Self.derivedSeed(Self.derivedSeed(seed, .split), .dataset), firstIndex: 0, into: $0)
            }
        case .stream(_, let heldOut):
            guard heldOut.count % d == 0 else {
                throw FlowError.shapeMismatch("held-out rows have \(heldOut.count) values, not a multiple of dimension \(d)")
            }
            if let bad = heldOut.firstNonFiniteIndex {
                throw FlowError.nonFinite("held-out row \(bad / d) is not finite")
            }
            trainRows = []
            heldOutRows = Array(heldOut.prefix(configuration.heldOutLimit * d))
        }

        // The held-out evaluation set is fixed once: times and x0 come from
        // their own seed, so held-out losses are comparable across steps.
        let m = heldOutRows.count / d
        let heldSeed = Self.derivedSeed(seed, .split)
        var times = [Double](repeating: 0, count: m)
        for j in 0..<m {
            var r = RandomStream(seed: heldSeed, purpose: .trainingTime, index: UInt64(j))
            times[j] = loss.timeDistribution.sample(&r)
        }
        var x0 = [Float](repeating: 0, count: m * d)
        x0.withUnsafeMutableBufferPointer { base.sample(seed: Self.derivedSeed(heldSeed, .trainingBase), firstIndex: 0, into: $0) }
        var points = [Float](repeating: 0, count: m * d), targets = points
        let nonFinite = times.withUnsafeBufferPointer { t in
            loss.interpolate(times: t, x0: x0, x1: heldOutRows, dimension: d, points: &points, targets: &targets)
        }
        if let bad = nonFinite { throw loss.schedule.nonFiniteError(at: bad.time, bad.coefficients) }
        heldOutTimes = times
        heldOutContexts = heldOutContextRows
        heldOutPoints = points
        heldOutTargets = targets

        let trainable = self.trainable
        state = TrainerState(counts: trainable.map { graph.parameters[$0].tensor.count }) { a, dst in
            graph.parameters[trainable[a]].tensor.scalars.withUnsafeBufferPointer { dst.update(from: $0.baseAddress!, count: $0.count) }
        }
    }

    /// The summed gradient of the last `computeGradient`, per trainable parameter.
    var gradient: [[Float]] { state.arrays(state.gradient) }
    /// Adam's moments and the EMA weights, per trainable parameter.
    var firstMoment: [[Float]] { state.arrays(state.firstMoment) }
    var secondMoment: [[Float]] { state.arrays(state.secondMoment) }
    var ema: [[Float]] { state.arrays(state.ema) }

    /// The network being trained (current raw weights are in the trainer).
    public var graph: Graph { differentiator.graph }

    /// Samples per work unit: the configured chunk size, capped by what the
    /// network's recorded passes hold in bounded memory
    /// (`GraphDifferentiator.preferredChunkSize`; never binding for MLPs of
    /// the default sizes). Fixed per trainer, so results do not depend on
    /// the thread count.
    public var effectiveChunkSize: Int { Swift.min(configuration.chunkSize, differentiator.preferredChunkSize) }

    /// Number of held-out samples evaluated.
    public var heldOutCount: Int { heldOutTimes.count }

    /// A seed for one use of the user's seed, independent of the others.
    static func derivedSeed(_ seed: UInt64, _ purpose: RandomStream.Purpose) -> UInt64 {
        var r = RandomStream(seed: seed, purpose: purpose, index: UInt64.max)
        return UInt64(r.nextUInt32()) << 32 | UInt64(r.nextUInt32())
    }

    // MARK: One update

    /// Makes one update and returns the minibatch's mean losses (raw
    /// weights, before the update).
    /// - Throws: `.nonFinite` when the loss or gradient is not finite (the
    ///   weights are left unchanged: lower the learning rate or clip), or
    ///   the schedule is not finite at a sampled time (a failed host
    ///   schedule; named in the message, weights unchanged); errors of a
    ///   streaming callback; `.nonFinite` for a streamed NaN.
    /// - Cost: one forward and one backward pass over `batchSize` samples.
    @discardableResult
    public func step() throws -> LossReport {
        if coupling != nil, contextDimension > 0 {
            throw FlowError.unsupported("mini-batch OT coupling re-pairs x0 with data rows of other contexts: not supported for conditional training")
        }
        let report = try computeGradient(step: stepCount)
        let norm2 = state.squaredNorm()
        guard norm2.isFinite else {
            throw FlowError.nonFinite("the gradient at step \(stepCount) is not finite; lower the learning rate or set a gradient clip")
        }
        var clipScale: Float? = nil
        if let clip = configuration.gradientClip, norm2.squareRoot() > clip {
            clipScale = Float(clip / norm2.squareRoot())
        }
        let lr = configuration.learningRate.rate(at: stepCount)
        let opt = configuration.optimizer
        let k = stepCount + 1
        let decay = Float(Swift.min(configuration.emaDecay, Double(1 + stepCount) / Double(10 + stepCount)))
        let state = self.state, net = differentiator, trainable = self.trainable
        // Block by block on the pool: clip, Adam/AdamW, EMA (each scalar's
        // operations as in a serial pass, so the thread count changes nothing).
        Parallel.forEachChunk(count: state.blocks.count, chunkSize: 1, threads: configuration.threads) { b, _ in
            let blk = state.blocks[b], a = blk.parameter, lo = blk.range.lowerBound, n = blk.range.count
            let off = state.offsets[a] + lo
            let g = state.gradient + off, w = net.parameterPointer(trainable[a]) + lo
            if let s = clipScale { for j in 0..<n { g[j] *= s } }
            opt.update(parameters: w, gradients: g, firstMoment: state.firstMoment + off,
                       secondMoment: state.secondMoment + off, count: n, learningRate: lr, k: k)
            let e = state.ema + off, keep = 1 - decay
            for j in 0..<n { e[j] = decay * e[j] + keep * w[j] }
        }
        // Packed copies of the new weights, one parameter per task.
        Parallel.forEachChunk(count: trainable.count, chunkSize: 1, threads: configuration.threads) { a, _ in
            net.repack(parameter: trainable[a])
        }
        stepCount += 1
        lastLoss = report
        lastLearningRate = lr
        cachedModel = nil
        return report
    }

    /// Fills `gradient` with ∂G/∂θ of the minibatch of update `step` at the
    /// current raw weights and returns its mean losses.
    func computeGradient(step: Int) throws -> LossReport {
        let b = configuration.batchSize, d = dimension, cs = effectiveChunkSize
        if case .stream(let fill, _) = data {
            if streamBatch.count != b * d { streamBatch = [Float](repeating: 0, count: b * d) }
            try streamBatch.withUnsafeMutableBufferPointer { try fill(step, $0) }
            if let bad = streamBatch.firstNonFiniteIndex {
                throw FlowError.nonFinite("streamed batch for step \(step): row \(bad / d) is not finite")
            }
        }
        let chunkCount = (b + cs - 1) / cs
        while chunks.count < chunkCount { chunks.append(TrainingChunk()) }
        let state = self.state
        state.reserveChunks(chunkCount)
        let partial = UnsafeMutableBufferPointer(start: state.lossPartials, count: chunkCount)
        let nonFinite = UnsafeMutableBufferPointer(start: state.nonFinite, count: chunkCount)
        let seed = configuration.seed
        let baseSeed = Self.derivedSeed(seed, .trainingBase), dataSeed = Self.derivedSeed(seed, .dataset)
        let scale = 1 / Float(b)
        let chunks = self.chunks, loss = self.loss, base = self.base, data = self.data
        let rows = trainRows, net = differentiator, stream = streamBatch, coupling = self.coupling
        let contexts = self.contexts, cm = contextDimension, nullLabel = self.nullLabel
        let dropout = configuration.labelDropout
        Parallel.forEachChunk(count: b, chunkSize: cs, threads: configuration.threads) { c, range in
            let chunk = chunks[c], n = range.count
            let first = UInt64(step) &* UInt64(b) &+ UInt64(range.lowerBound)
            let x0 = chunk.x0.reserve(n * d), x1 = chunk.x1.reserve(n * d)
            let xt = chunk.points.reserve(n * d), u = chunk.targets.reserve(n * d), g = chunk.gradient.reserve(n * d)
            if chunk.times.count < n { chunk.times = [Double](repeating: 0, count: n) }
            for i in 0..<n {
                var r = RandomStream(seed: seed, purpose: .trainingTime, index: first + UInt64(i))
                chunk.times[i] = loss.timeDistribution.sample(&r)
            }
            base.sample(seed: baseSeed, firstIndex: first, into: UnsafeMutableBufferPointer(start: x0, count: n * d))
            switch data {
            case .samples(let x):
                let c1 = cm > 0 ? chunk.contexts.reserve(n * cm) : nil
                x.withUnsafeBufferPointer { src in
                    for i in 0..<n {
                        var r = RandomStream(seed: seed, purpose: .minibatch, index: first + UInt64(i))
                        let row = rows[r.nextInt(below: rows.count)]
                        (x1 + i * d).update(from: src.baseAddress! + row * d, count: d)
                        if let c1, let contexts {
                            contexts.withUnsafeBufferPointer { (c1 + i * cm).update(from: $0.baseAddress! + row * cm, count: cm) }
                            if let nullLabel {
                                var u = RandomStream(seed: seed, purpose: .labelDropout, index: first + UInt64(i))
                                if u.nextUniform() < dropout { c1[i] = nullLabel }
                            }
                        }
                    }
                }
            case .source(let source, _):
                source.sample(seed: dataSeed, firstIndex: first, into: UnsafeMutableBufferPointer(start: x1, count: n * d))
            case .stream:
                stream.withUnsafeBufferPointer { x1.update(from: $0.baseAddress! + range.lowerBound * d, count: n * d) }
            }
            coupling?.pair(x0: x0, x1: x1, count: n, dimension: d)
            chunk.times.withUnsafeBufferPointer { tb in
                let t = UnsafeBufferPointer(rebasing: tb[0..<n])
                nonFinite.initializeElement(at: c, to: loss.interpolate(times: t, x0: x0, x1: x1, dimension: d,
                                                                        points: xt, targets: u))
                let v = cm > 0 ? net.forward(times: t, points: xt, contexts: chunk.contexts.pointer, workspace: chunk.workspace)
                               : net.forward(times: t, points: xt, workspace: chunk.workspace)
                partial[c] = InterpolantLoss.sums(velocities: v, targets: u, count: n * d, gradient: g, gradientScale: scale)
                net.backward(outputGradient: g, workspace: chunk.workspace)
            }
        }
        // A schedule that failed (e.g. a host callback) is named before the
        // NaN loss it causes; the weights are not updated.
        if let bad = nonFinite.lazy.compactMap({ $0 }).first {
            throw FlowError.nonFinite("step \(step): \(loss.schedule.nonFiniteError(at: bad.time, bad.coefficients).message)")
        }
        var total = LossReport.zero
        for c in 0..<chunkCount { total = total + partial[c] }
        let trainable = self.trainable
        for c in 0..<chunkCount {
            for (a, p) in trainable.enumerated() {
                state.chunkGradients[c * trainable.count + a] = net.gradientPointer(p, workspace: chunks[c].workspace)
            }
        }
        // Fixed blocks on the pool: chunk sums in chunk order, norm partials.
        Parallel.forEachChunk(count: state.blocks.count, chunkSize: 1, threads: configuration.threads) { blk, _ in
            state.reduce(block: blk, chunks: chunkCount)
        }
        let mean = total.scaled(1 / Double(b))
        guard mean.quadratic.isFinite, mean.regression.isFinite else {
            throw FlowError.nonFinite("the loss at step \(step) is not finite; lower the learning rate or set a gradient clip")
        }
        return mean
    }

    // MARK: Running

    /// Runs `steps` updates, evaluating the held-out loss every
    /// `evaluationInterval` steps and after the last one, and calls
    /// `progress` after every update; returning false from it stops.
    /// - Throws: `.cancelled` when `progress` returned false (the trainer
    ///   stays consistent: the finished updates are kept); errors of `step()`.
    public func fit(steps: Int, progress: ((TrainingProgress) -> Bool)? = nil) throws {
        guard steps >= 0 else { throw FlowError.invalidArgument("steps \(steps) must be ≥ 0") }
        let target = stepCount + steps
        let start = Clock.now()
        for i in 0..<steps {
            try step()
            if stepCount % configuration.evaluationInterval == 0 || i == steps - 1 {
                try updateHeldOutLoss()
            }
            if let progress {
                let elapsed = Clock.now() - start
                let p = TrainingProgress(step: stepCount, targetStep: target, trainLoss: lastLoss!,
                                         heldOutLoss: lastHeldOutLoss,
                                         stepsPerSecond: elapsed > 0 ? Double(i + 1) / elapsed : 0,
                                         learningRate: lastLearningRate)
                if !progress(p) {
                    try updateHeldOutLoss()
                    throw FlowError.cancelled("training stopped by the progress callback at step \(stepCount)")
                }
            }
        }
    }

    /// Sets `lastHeldOutLoss` to the held-out loss of the current weights,
    /// evaluating only when it is older than the last step, and returns it.
    @discardableResult
    public func updateHeldOutLoss() throws -> LossReport? {
        if heldOutStep != stepCount {
            lastHeldOutLoss = try evaluateHeldOut()
            heldOutStep = stepCount
        }
        return lastHeldOutLoss
    }

    /// Mean losses on the held-out set with the EMA weights, or nil when
    /// there is no held-out set.
    /// - Cost: one forward pass over the held-out set.
    public func evaluateHeldOut() throws -> LossReport? {
        let m = heldOutCount, d = dimension
        guard m > 0 else { return nil }
        let model = try self.model()
        var v = [Float](repeating: 0, count: m * d)
        heldOutTimes.withUnsafeBufferPointer { t in
            heldOutPoints.withUnsafeBufferPointer { x in
                heldOutContexts.withUnsafeBufferPointer { c in
                    v.withUnsafeMutableBufferPointer {
                        model.velocity(times: t, points: x, contexts: contextDimension > 0 ? c : nil, into: $0,
                                       threads: configuration.threads)
                    }
                }
            }
        }
        let sums = InterpolantLoss.sums(velocities: v, targets: heldOutTargets, count: m * d)
        return sums.scaled(1 / Double(m))
    }

    /// The current EMA weights (raw weights when `emaDecay` is 0) as graph parameters.
    public var evaluationParameters: [Graph.Parameter] {
        var params = differentiator.parameters
        for (a, p) in trainable.enumerated() where configuration.emaDecay > 0 {
            params[p].tensor = Tensor(shape: params[p].tensor.shape, scalars: state.array(state.ema, a))
        }
        return params
    }

    /// The current raw (non-averaged) weights.
    public var rawParameters: [Graph.Parameter] { differentiator.parameters }

    /// An immutable model with the EMA weights: what to sample, evaluate and
    /// export. Stays valid while training continues (a snapshot).
    /// - Throws: `.invalidModel` only if the graph is inconsistent.
    public func model() throws -> Model {
        if let cachedModel { return cachedModel }
        var g = differentiator.graph
        g.parameters = evaluationParameters
        // The current schedule (a path-length optimiser moves it).
        var meta = ScheduleMetadata.recording(loss.schedule, in: metadata)
        meta["flowrt.training.steps"] = String(stepCount)
        if let l = lastHeldOutLoss { meta["flowrt.training.heldout_loss"] = String(l.quadratic) }
        let m = try Model(graph: g, metadata: meta)
        cachedModel = m
        return m
    }

    /// The flow trained so far: `model()` with the current schedule
    /// (`loss.schedule`, which a `PathLengthOptimizer` moves) over the
    /// trainer's base density. The model's metadata records the schedule
    /// (`ScheduleMetadata`), so `Flow.saveONNX` and `Flow(model:)` round-trip it.
    /// - Throws: `.unsupported` when the base is sample-only (a flow's base
    ///   needs a log-density); as `model()`.
    public func flow() throws -> Flow {
        var density: (any Density)? = nil
        if !(base is StandardNormal) {
            guard let d = base as? any Density, (d as? CallbackDensity)?.hasLogDensity ?? true else {
                throw FlowError.unsupported("the trainer's base density is sample-only: a flow needs a base with a log-density")
            }
            density = d
        }
        return try Flow(field: model(), base: density, schedule: loss.schedule)
    }
}

/// Per-chunk scratch: one graph workspace plus the minibatch buffers.
final class TrainingChunk: @unchecked Sendable {
    let workspace = GraphWorkspace()
    var times: [Double] = []
    let x0 = FloatBuffer(), x1 = FloatBuffer(), points = FloatBuffer(), targets = FloatBuffer(), gradient = FloatBuffer()
    /// The chunk's contexts `[n, m]` (conditional networks).
    let contexts = FloatBuffer()
}

/// Monotonic wall-clock seconds (no Foundation in the core).
enum Clock {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + 1e-9 * Double(ts.tv_nsec)
    }
}
