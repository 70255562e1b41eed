/// Everything that determines a training run besides the network, the data
/// and the base density. Same configuration, data and initial network →
/// bit-identical weights, whatever `threads` is.
public struct TrainerConfiguration: Sendable, Equatable {
    /// Samples per update (default 1024).
    public var batchSize: Int
    /// Learning rate with warmup and decay (default 1e-3, constant).
    public var learningRate: LearningRateSchedule
    /// Adam or AdamW and their constants.
    public var optimizer: OptimizerConfiguration
    /// Rescale the gradient to this Euclidean norm when it is larger; nil = off.
    public var gradientClip: Double?
    /// EMA decay δ of the evaluation weights (0 = the raw weights). Update s
    /// uses min(δ, (1 + s)/(10 + s)) so that early averages are not
    /// dominated by the initialisation.
    public var emaDecay: Double
    /// Fraction of in-memory samples held out for the held-out loss (default 0.1).
    public var heldOutFraction: Double
    /// At most this many held-out samples of `.samples` and `.stream` data
    /// are evaluated (default 8192); a `.source` states its own count.
    public var heldOutLimit: Int
    /// The training time density (default uniform).
    public var timeDistribution: TimeDistribution
    /// The seed of every random draw (split, minibatches, times, base samples).
    public var seed: UInt64
    /// Worker threads (default: the processor count). Does not change results.
    public var threads: Int
    /// Samples per work unit: the batch is cut into chunks of this size
    /// independently of `threads` (default 256). Changes rounding, not maths.
    public var chunkSize: Int
    /// `fit` evaluates the held-out loss every this many steps (default 250)
    /// and after its last step.
    public var evaluationInterval: Int
    /// Label dropout p for classifier-free guidance (label-conditional
    /// networks only; default 0): each training sample's label is replaced
    /// by the null class ∅ = classCount − 1 with probability p, drawn from
    /// `RandomStream(seed, .labelDropout, sample)`. The network then also
    /// learns v̂(t, x, ∅) (reserve the last class for it: real labels are
    /// 0..<classCount − 1), which `Flow.sample(…guidance:)` uses.
    public var labelDropout: Double

    public init(batchSize: Int = 1024, learningRate: LearningRateSchedule = LearningRateSchedule(),
                optimizer: OptimizerConfiguration = OptimizerConfiguration(), gradientClip: Double? = nil,
                emaDecay: Double = 0.999, heldOutFraction: Double = 0.1, heldOutLimit: Int = 8192,
                timeDistribution: TimeDistribution = .uniform, seed: UInt64 = 0,
                threads: Int = Parallel.defaultThreads, chunkSize: Int = 256, evaluationInterval: Int = 250,
                labelDropout: Double = 0) {
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.optimizer = optimizer
        self.gradientClip = gradientClip
        self.emaDecay = emaDecay
        self.heldOutFraction = heldOutFraction
        self.heldOutLimit = heldOutLimit
        self.timeDistribution = timeDistribution
        self.seed = seed
        self.threads = threads
        self.chunkSize = chunkSize
        self.evaluationInterval = evaluationInterval
        self.labelDropout = labelDropout
    }

    /// - Throws: `.invalidArgument` naming the first bad field.
    public func validate() throws {
        guard batchSize > 0, batchSize <= 1 << 24 else { throw FlowError.invalidArgument("batch size \(batchSize) must be in 1...2^24") }
        try learningRate.validate()
        try optimizer.validate()
        try timeDistribution.validate()
        if let c = gradientClip, !(c > 0 && c.isFinite) {
            throw FlowError.invalidArgument("gradient clip \(c) must be finite and > 0 (nil turns clipping off)")
        }
        guard emaDecay >= 0, emaDecay < 1 else { throw FlowError.invalidArgument("EMA decay \(emaDecay) must be in [0, 1)") }
        guard heldOutFraction >= 0, heldOutFraction < 1 else {
            throw FlowError.invalidArgument("held-out fraction \(heldOutFraction) must be in [0, 1)")
        }
        guard heldOutLimit >= 0 else { throw FlowError.invalidArgument("held-out limit must be ≥ 0") }
        try Limits.checkThreads(threads)
        guard chunkSize > 0 else { throw FlowError.invalidArgument("chunk size must be > 0") }
        guard evaluationInterval > 0 else { throw FlowError.invalidArgument("evaluation interval must be > 0") }
        guard labelDropout >= 0, labelDropout < 1 else {
            throw FlowError.invalidArgument("label dropout \(labelDropout) must be in [0, 1)")
        }
    }
}

/// Where a trainer's target samples x1 come from.
public enum TrainingData: @unchecked Sendable {
    /// Samples held in memory, `[n, d]` row-major (for a conditional network
    /// with a parallel contexts array `[n, m]`, `Trainer.init(…contexts:)`:
    /// row i of the contexts goes with row i of the samples, in the split
    /// and in every minibatch). A seeded permutation puts
    /// ⌊n · heldOutFraction⌋ rows (at most `heldOutLimit` are evaluated) in
    /// the held-out split; minibatches draw training rows uniformly with
    /// replacement: row of sample k = `RandomStream(seed, .minibatch, k)`.
    case samples([Float])
    /// An unlimited sampler (a toy dataset, a density): sample k of training
    /// is `source.sample(seed: derived, firstIndex: k)`; `heldOut` fresh
    /// samples from an independent seed form the held-out set.
    case source(any SampleSource, heldOut: Int)
    /// Streaming: the host fills a batch `[batchSize, d]` for a step index
    /// each time one is needed (called on the training thread). `heldOut`,
    /// optional rows `[m, d]`, give the held-out loss.
    case stream((_ step: Int, _ batch: UnsafeMutableBufferPointer<Float>) throws -> Void, heldOut: [Float])
}

/// What a progress callback sees.
public struct TrainingProgress: Sendable {
    /// Updates done so far (over the trainer's life, including resumed ones).
    public var step: Int
    /// The step `fit` runs to.
    public var targetStep: Int
    /// Mean losses of the last minibatch (raw weights, before the update).
    public var trainLoss: LossReport
    /// Held-out losses with the EMA weights at the last evaluation, if any.
    public var heldOutLoss: LossReport?
    /// Updates per second over this `fit` call so far.
    public var stepsPerSecond: Double
    /// The learning rate of the last update.
    public var learningRate: Double
}
