import ArgumentParser
import FlowRuntime
import Foundation

/// `flowrt train`: fit a velocity network to samples (a .npy/.csv file or a
/// built-in toy dataset) with the quadratic interpolant loss.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a flow on samples (.npy / .csv) or a built-in toy dataset.",
        discussion: """
            Examples:
              flowrt train --toy checkerboard --steps 5000 --checkpoint cb.ckpt
              flowrt train --data points.npy --steps 20000 --width 128 --out model.onnx
              flowrt train --data theta.npy --context x.npy --out posterior.onnx
              flowrt train --data x.npy --context labels.npy --num-classes 11 --label-dropout 0.1 --out cond.onnx

            A conditional MLP p(x | c) trains on pairs: --context holds one row per --data
            sample (the context concatenated after x and the time features; for
            simulation-based inference, θ as --data and the observations as --context).
            With --num-classes the context is a class label per sample, embedded;
            --label-dropout p replaces labels by the last class (the null label of
            `flowrt conditional sample --guidance`). Sample, evaluate and encode the
            saved model with `flowrt conditional …`.
            """)

    @OptionGroup var options: TrainingOptions

    @Option(help: "Samples: a float32/float64 .npy of shape [n, d], or a CSV of n rows (header optional).")
    var data: String?
    @Flag(help: "The CSV's first row is a header (otherwise only a row without any number is).") var header = false
    @OptionGroup var conditioning: ConditioningOptions
    @Option(help: "A built-in dataset instead of --data: \(ToyDataset.allCases.map(\.rawValue).joined(separator: ", ")).")
    var toy: String?
    @Option(help: "Images instead of --data: fashion-mnist (Debian's dataset-fashion-mnist), digits (8×8, if exported), or an IDX (.gz) / uint8 .npy file [n, H, W] or [n, C, H, W]. Trains a U-Net.")
    var images: String?
    @OptionGroup var unet: UNetOptions
    @Option(parsing: .unconditional, help: "With --images: write a sample grid PNG every N steps (0 = only at the end).",
            transform: Checked.integer(atLeast: 0)) var gridEvery = 500
    @Option(help: "With --images: the sample grid PNG (default: --out with -grid.png, else grid.png).") var grid: String?
    @Option(parsing: .unconditional, help: "With --images: training images held out for the held-out loss (the last N of the training set).",
            transform: Checked.integer(atLeast: 0)) var validation = 1000
    @Option(parsing: .unconditional, help: "With --images fashion-mnist: after training, bits/dim on this many test images (Hutchinson, 1 probe, 0 = skip).",
            transform: Checked.integer(atLeast: 0)) var testImages = 0
    @Option(help: "Write the trained model (EMA weights, flowrt.* metadata) as ONNX here.")
    var out: String?
    @Option(help: "Write a checkpoint here at the end (and resume from it with --resume).")
    var checkpoint: String?
    @Option(help: "Resume from this checkpoint (same data and options).")
    var resume: String?
    @Option(help: "Print a plain progress line every N steps with the elapsed time (0 = live line / every 10%).")
    var logInterval = 0

    func run() throws {
        // Outputs first: a typo in a path must not cost a training run.
        if let out { try Checked.writable(out, option: "--out", extensions: [".onnx"]) }
        if let checkpoint { try Checked.writable(checkpoint, option: "--checkpoint", extensions: []) }
        if let images {
            guard data == nil, toy == nil else { throw ValidationError("give one of --images, --data and --toy") }
            guard conditioning.context == nil else {
                throw ValidationError("--context trains a conditional MLP on --data; --images trains an unconditional U-Net")
            }
            try conditioning.refuseWithoutContext()
            return try ImageTraining.run(images: images, options: options, unet: unet, out: out, checkpoint: checkpoint,
                                         resume: resume, logInterval: logInterval, gridEvery: gridEvery, grid: grid,
                                         validation: validation, testImages: testImages)
        }
        let trainingData: TrainingData
        let dimension: Int
        var contexts: TrainingContexts?
        switch (data, toy) {
        case (let path?, nil):
            let (values, d) = try SampleFile.read(path, header: header)
            trainingData = .samples(values)
            dimension = d
            contexts = try conditioning.contexts(rows: values.count / d)
        case (nil, let name?):
            guard let t = ToyDataset(rawValue: name) else {
                throw ValidationError("unknown toy dataset '\(name)'; choose one of \(ToyDataset.allCases.map(\.rawValue))")
            }
            guard conditioning.context == nil else {
                throw ValidationError("--context pairs contexts with --data samples; a --toy dataset has none")
            }
            trainingData = .source(t.source, heldOut: options.heldOut)
            dimension = 2
        default:
            throw ValidationError("give exactly one of --data, --toy and --images")
        }
        if contexts == nil { try conditioning.refuseWithoutContext() }
        let trainer = try options.makeTrainer(dimension: dimension, data: trainingData, contexts: contexts)
        if let resume { try Checked.loading(resume) { try trainer.loadCheckpoint(from: resume) } }
        let remaining = max(0, options.resolved(.vectors).steps - trainer.stepCount)
        var printer = ProgressPrinter(logInterval: logInterval)
        try trainer.fit(steps: remaining) { printer.show($0) }
        printer.finish()
        if let checkpoint { try trainer.saveCheckpoint(to: checkpoint); print("checkpoint: \(checkpoint)") }
        if let out { try trainer.model().saveONNX(path: out); print("model: \(out)") }
    }
}

/// Options shared by `train` and `demo`.
struct TrainingOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Total training steps (≥ 0; default 5000, 3000 with --images).", transform: Checked.integer(atLeast: 0)) var steps: Int?
    @Option(parsing: .unconditional, help: "Samples per step (≥ 1; default 1024, 32 with --images).", transform: Checked.integer(atLeast: 1)) var batch: Int?
    @Option(parsing: .unconditional, help: "Hidden units per layer (≥ 1).", transform: Checked.integer(atLeast: 1)) var width = 256
    @Option(parsing: .unconditional, help: "Hidden layers (≥ 1).", transform: Checked.integer(atLeast: 1)) var depth = 3
    @Option(parsing: .unconditional, help: "Sinusoidal time features K (0 = t appended to x).", transform: Checked.integer(atLeast: 0)) var timeFrequencies = 0
    @Option(help: "Peak learning rate (Adam; default 2e-3, 1e-3 with --images).") var lr: Double?
    @Option(parsing: .unconditional, help: "Linear warmup steps (≥ 0; default 200, 100 with --images).", transform: Checked.integer(atLeast: 0)) var warmup: Int?
    @Option(help: "Decay after warmup: cosine, step, constant.") var decay = "cosine"
    @Option(help: "Optimiser: adam or adamw.") var optimizer = "adam"
    @Option(help: "Weight decay (L2 for adam, decoupled for adamw).") var weightDecay = 0.0
    @Option(help: "Gradient-norm clip (0 = off).") var clip = 1.0
    @Option(help: "EMA decay of the evaluation weights (0 = off; default 0.999, 0.995 with --images).") var ema: Double?
    @Option(help: "Interpolant schedule: trig or linear.") var schedule = "trig"
    @Option(help: "Held-out fraction of --data samples.") var heldOutFraction = 0.1
    @Option(parsing: .unconditional, help: "Held-out samples drawn from a --toy dataset (≥ 0).", transform: Checked.integer(atLeast: 0)) var heldOut = 4096
    @Option(parsing: .unconditional, help: "Random seed.", transform: Checked.seed) var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "Worker threads (0 = all processors; results do not depend on it).", transform: Checked.integer(atLeast: 0)) var threads = 0
    @Option(parsing: .unconditional, help: "Samples per work unit (changes rounding, not results' statistics).", transform: Checked.integer(atLeast: 1)) var chunkSize = 256

    /// Defaults of the options that differ between vector and image training.
    struct Defaults {
        var steps: Int, batch: Int, lr: Double, warmup: Int, ema: Double
        static let vectors = Defaults(steps: 5000, batch: 1024, lr: 2e-3, warmup: 200, ema: 0.999)
        /// Sized for a U-Net on 2 CPU cores (see `make demo-images`).
        static let images = Defaults(steps: 3000, batch: 32, lr: 1e-3, warmup: 100, ema: 0.995)
    }

    /// The options with unset ones filled from `defaults`.
    func resolved(_ defaults: Defaults) -> (steps: Int, batch: Int, lr: Double, warmup: Int, ema: Double) {
        (steps ?? defaults.steps, batch ?? defaults.batch, lr ?? defaults.lr, warmup ?? defaults.warmup, ema ?? defaults.ema)
    }

    /// A trainer of the MLP these options describe; with `contexts`, a
    /// conditional MLP (float contexts or class labels) trained on pairs.
    func makeTrainer(dimension: Int, data: TrainingData, contexts: TrainingContexts? = nil) throws -> Trainer {
        let graph = try VelocityMLP(dimension: dimension, hiddenWidths: Array(repeating: width, count: depth),
                                    timeEncoding: timeFrequencies > 0 ? .sinusoidal(frequencies: timeFrequencies) : .concat,
                                    seed: seed, contextDimension: contexts?.classCount == 0 ? contexts?.dimension ?? 0 : 0,
                                    classCount: contexts?.classCount ?? 0,
                                    labelEmbeddingWidth: contexts?.labelEmbeddingWidth ?? 16).makeGraph()
        return try makeTrainer(graph: graph, data: data, defaults: .vectors, metadata: ["flowrt.architecture": "mlp"],
                               contexts: contexts)
    }

    /// A trainer of `graph` with these options (unset ones from `defaults`).
    func makeTrainer(graph: Graph, data: TrainingData, defaults: Defaults, metadata: [String: String],
                     contexts: TrainingContexts? = nil) throws -> Trainer {
        let (steps, batch, lr, warmup, ema) = resolved(defaults)
        guard let kind = ScheduleKind(rawValue: schedule) else { throw ValidationError("unknown schedule '\(schedule)'") }
        guard let opt = OptimizerConfiguration.Kind(rawValue: optimizer) else { throw ValidationError("unknown optimizer '\(optimizer)'") }
        let decayRule: LearningRateSchedule.Decay
        switch decay {
        case "cosine": decayRule = .cosine(totalSteps: steps, minimumFactor: 0.01)
        case "step": decayRule = .step(every: max(1, (steps - warmup) / 3), factor: 0.3)
        case "constant": decayRule = .constant
        default: throw ValidationError("unknown decay '\(decay)'")
        }
        let config = TrainerConfiguration(
            batchSize: batch,
            learningRate: LearningRateSchedule(learningRate: lr, warmupSteps: warmup, decay: decayRule),
            optimizer: OptimizerConfiguration(kind: opt, weightDecay: weightDecay),
            gradientClip: clip > 0 ? clip : nil, emaDecay: ema, heldOutFraction: heldOutFraction,
            seed: seed, threads: threads > 0 ? threads : Parallel.defaultThreads, chunkSize: chunkSize,
            labelDropout: contexts?.labelDropout ?? 0)
        return try Trainer(graph: graph, data: data, contexts: contexts?.values, loss: InterpolantLoss(schedule: kind.schedule),
                           configuration: config, metadata: metadata)
    }
}

/// The options of `flowrt train` that make the MLP conditional.
struct ConditioningOptions: ParsableArguments {
    @Option(help: "Contexts of a conditional MLP, one row per --data sample: [n, m] floats (.npy float32/float64 or .csv); with --num-classes, [n] or [n, 1] class labels 0..K-1.")
    var context: String?
    @Flag(help: "The context CSV's first row is a header.") var contextHeader = false
    @Option(parsing: .unconditional, help: "With --context: the contexts are class labels of K ≥ 2 classes (a label-conditional MLP).",
            transform: Checked.integer(atLeast: 2)) var numClasses: Int?
    @Option(parsing: .unconditional, help: "With --num-classes: width of a label's learned embedding.",
            transform: Checked.integer(atLeast: 1)) var labelEmbedding = 16
    @Option(help: "With --num-classes: probability p in [0, 1) of replacing a training label by the null label K-1 (for guidance).")
    var labelDropout = 0.0

    /// The contexts of `rows` training samples from `--context`, or nil without it.
    func contexts(rows: Int) throws -> TrainingContexts? {
        guard let context else { try refuseWithoutContext(); return nil }
        let array = try Checked.loading(context) {
            context.hasSuffix(".npy") ? try NPY.read(path: context) : try CSV.read(path: context, header: contextHeader)
        }
        let m = array.shape.count == 2 ? array.shape[1] : 1
        guard (array.shape.count == 1 || array.shape.count == 2) && m > 0 else {
            throw ValidationError("'\(context)' holds shape \(array.shape); expected [n, m] contexts")
        }
        guard array.shape[0] == rows else {
            throw ValidationError("--context has \(array.shape[0]) rows but --data \(rows): one context per sample")
        }
        if numClasses != nil {
            guard m == 1 else {
                throw ValidationError("--num-classes takes one label per sample: '\(context)' has \(m) columns")
            }
        } else if labelDropout != 0 {
            throw ValidationError("--label-dropout needs class labels (--num-classes)")
        }
        let values = try Checked.loading(context) { try array.points(dimension: m).scalars }
        return TrainingContexts(values: values, dimension: m, classCount: numClasses ?? 0,
                                labelEmbeddingWidth: labelEmbedding, labelDropout: labelDropout)
    }

    /// Conditioning options without `--context` are refused (they would be ignored).
    func refuseWithoutContext() throws {
        if context == nil, numClasses != nil || labelDropout != 0 {
            throw ValidationError("--num-classes and --label-dropout need --context (the labels)")
        }
    }
}

/// Contexts of conditional training: `values` [n, dimension], or class labels
/// (dimension 1) when `classCount` > 0.
struct TrainingContexts {
    var values: [Float]
    var dimension: Int
    var classCount: Int
    var labelEmbeddingWidth: Int
    var labelDropout: Double
}

/// The live progress line: `\r`-updated on a terminal (at most 10 times a
/// second), one plain line per 10% when piped.
struct ProgressPrinter {
    /// Plain lines every this many steps with elapsed seconds (benchmarks); 0 = automatic.
    var logInterval = 0
    let isTerminal = isatty(STDOUT_FILENO) != 0
    let start = Date()
    var lastPrint = 0.0
    var lastDecile = -1

    mutating func show(_ p: TrainingProgress) -> Bool {
        let done = p.step >= p.targetStep
        if logInterval > 0 {
            if p.step % logInterval == 0 || done {
                print(String(format: "step %d elapsed %.3f loss %.5f heldout %.5f steps/s %.1f", p.step,
                             Date().timeIntervalSince(start), p.trainLoss.quadratic, p.heldOutLoss?.quadratic ?? .nan,
                             p.stepsPerSecond))
                fflush(stdout)
            }
            return true
        }
        let held = p.heldOutLoss.map { String(format: "%.4f", $0.quadratic) } ?? "—"
        let eta = p.stepsPerSecond > 0 ? Double(p.targetStep - p.step) / p.stepsPerSecond : 0
        let line = String(format: "step %6d/%d  loss %.4f  held-out %@  %.0f steps/s  ETA %@",
                          p.step, p.targetStep, p.trainLoss.quadratic, held, p.stepsPerSecond, Self.duration(eta))
        if isTerminal {
            let now = Date().timeIntervalSince1970
            if done || now - lastPrint > 0.1 {
                FileHandle.standardOutput.write(("\r\u{1B}[K" + line).data(using: .utf8)!)
                lastPrint = now
            }
        } else {
            let decile = p.step * 10 / max(1, p.targetStep)
            if decile != lastDecile || done { print(line); fflush(stdout); lastDecile = decile }
        }
        return true
    }

    func finish() { if isTerminal { print("") } }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}

/// Reading samples for `--data`: a 2-D float32/float64 .npy or a CSV (a
/// header with `--header`, or a first row without numbers), through
/// FlowRuntime's readers; errors name the file.
enum SampleFile {
    static func read(_ path: String, header: Bool) throws -> ([Float], Int) {
        let array = try Checked.loading(path) { path.hasSuffix(".npy") ? try NPY.read(path: path) : try CSV.read(path: path, header: header) }
        guard array.shape.count == 2, array.shape[0] > 0, array.shape[1] > 0 else {
            throw ValidationError("'\(path)' holds shape \(array.shape); expected [n, d] samples")
        }
        return (try Checked.loading(path) { try array.points(dimension: array.shape[1]).scalars }, array.shape[1])
    }
}
