import ArgumentParser
import FlowRuntime
import Foundation

/// The U-Net of `flowrt train --images` (`VelocityUNet`); defaults sized for
/// CPU training on 28×28 images.
struct UNetOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "U-Net (--images): channels of the first level (even, ≥ 2).",
            transform: Checked.integer(atLeast: 2)) var modelChannels = 32
    @Option(help: "U-Net: channel multiplier per level, comma-separated (its length is the number of levels).")
    var channelMult = "1,2,2"
    @Option(help: "U-Net: feature-map heights followed by self-attention, comma-separated ('' = the middle block only; default H/2, e.g. 14 for 28×28).")
    var attention: String?
    @Option(parsing: .unconditional, help: "U-Net: residual blocks per level.", transform: Checked.integer(atLeast: 1))
    var resBlocks = 1
    @Option(parsing: .unconditional, help: "U-Net: attention heads.", transform: Checked.integer(atLeast: 1)) var heads = 1
    @Option(parsing: .unconditional, help: "U-Net: GroupNorm groups (at most).", transform: Checked.integer(atLeast: 1)) var groups = 32

    static func integers(_ text: String, option: String) throws -> [Int] {
        try text.split(separator: ",").map {
            guard let v = Int($0.trimmingCharacters(in: .whitespaces)), v > 0 else {
                throw ValidationError("\(option) '\(text)' must be positive integers separated by commas")
            }
            return v
        }
    }

    /// The network for images of `shape` `[C, H, W]`.
    func network(shape: [Int], seed: UInt64) throws -> VelocityUNet {
        VelocityUNet(channels: shape[0], height: shape[1], width: shape[2], modelChannels: modelChannels,
                     channelMultipliers: try Self.integers(channelMult, option: "--channel-mult"), resBlocksPerLevel: resBlocks,
                     attentionResolutions: Set(try Self.integers(attention ?? Self.defaultAttention(shape), option: "--attention")), heads: heads,
                     groups: groups, seed: seed)
    }

    /// H/2 when the second level has that height (a 28×28 image: 14), else none.
    static func defaultAttention(_ shape: [Int]) -> String { shape[1] % 2 == 0 && shape[1] >= 4 ? "\(shape[1] / 2)" : "" }

    func summary(shape: [Int]) -> String {
        "U-Net(channels \(modelChannels), mult [\(channelMult)], attention [\(attention ?? Self.defaultAttention(shape))], \(resBlocks) res block(s)/level)"
    }
}

/// Image data named on the command line.
enum ImageSet {
    /// `fashion-mnist` (train and the official test split), `digits` (the
    /// 8×8 digits exported as uint8 .npy, when present), or a file read by
    /// `ImageData.read` (IDX, gzip IDX, uint8 .npy; no test split).
    static func load(_ spec: String) throws -> (train: PixelArray, test: PixelArray?, name: String) {
        switch spec {
        case "fashion-mnist":
            return (try FashionMNIST.images(.train), try FashionMNIST.images(.test), spec)
        case "digits":
            let path = ProcessInfo.processInfo.environment["FLOWRT_DIGITS"] ?? "bench/images/digits.npy"
            guard FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("scikit-learn's 8×8 digits are not at \(path): save np.clip(sklearn.datasets.load_digits().images * 16, 0, 255).astype(np.uint8) there with np.save, or set FLOWRT_DIGITS to such a file")
            }
            let all = try Checked.loading(path) { try ImageData.read(path: path) }
            let nTest = all.count / 5  // the last fifth is the test split
            return (all.samples(0..<(all.count - nTest)), all.samples((all.count - nTest)..<all.count), spec)
        default:
            guard FileManager.default.fileExists(atPath: spec) else {
                throw ValidationError("--images '\(spec)': not fashion-mnist, digits or an existing file")
            }
            let a = try Checked.loading(spec) { try ImageData.read(path: spec) }
            guard (3...4).contains(a.shape.count), a.count > 0 else {
                throw ValidationError("'\(spec)' holds shape \(a.shape); expected images [n, H, W] or [n, C, H, W]")
            }
            return (a, nil, (spec as NSString).lastPathComponent)
        }
    }

    /// The images scored for bits/dim: the test split when there is one.
    static func evaluation(_ spec: String) throws -> PixelArray {
        let s = try load(spec)
        return s.test ?? s.train
    }
}

/// Sampling image grids and bits per dimension through the public Flow API.
enum ImageFlow {
    /// A flow over `model` with the trig interpolant's metadata (sampling
    /// and log-densities use the velocity alone).
    static func flow(_ model: Model) throws -> Flow { try Flow(field: model, schedule: TrigSchedule()) }

    /// The image shape `[C, H, W]` of a model, or a validation error.
    static func shape(_ model: Model) throws -> [Int] {
        let s = model.sampleShape
        guard s.count == 3 else { throw ValidationError("the model's sample shape is \(s), not an image [C, H, W]") }
        return s
    }

    /// `rows × columns` samples as a PNG grid.
    static func grid(model: Model, rows: Int, columns: Int, seed: UInt64, solver: SolverOptions,
                     progress: SolverProgress? = nil) throws -> (PNGImage, Tensor, SolverStatistics) {
        let shape = try shape(model)
        let samples = try flow(model).sample(count: rows * columns, seed: seed, solver: solver, progress: progress)
        return (ImageGrid.image(samples.points.scalars, shape: shape, rows: rows, columns: columns), samples.points,
                samples.statistics)
    }

    /// "8x8" → (8, 8).
    static func gridSize(_ text: String) throws -> (rows: Int, columns: Int) {
        let parts = text.lowercased().split(separator: "x").map { Int($0) }
        guard parts.count == 2, let r = parts[0], let c = parts[1], (1...256).contains(r), (1...256).contains(c) else {
            throw ValidationError("--grid '\(text)' must be ROWSxCOLUMNS, e.g. 8x8 (1...256 each)")
        }
        return (r, c)
    }

    struct BitsPerDim {
        var mean: Double, standardError: Double, count: Int, statistics: SolverStatistics, perImage: [Double]
    }

    /// Bits per dimension of `images` dequantized with `seed`:
    /// bpd_i = −ln p(y_i)/(d ln 2) + 7 (`ImageData.bitsPerDimension`), the
    /// mean over images and its standard error (sample std / √n; Hutchinson
    /// noise included). `probes` nil: the exact divergence.
    static func bitsPerDim(model: Model, images: PixelArray, seed: UInt64, probes: Int?, solver: SolverOptions,
                           progress: SolverProgress? = nil) throws -> BitsPerDim {
        let d = try images.sampleShape().reduce(1, *)
        guard d == model.dimension else {
            throw ValidationError("the images have \(d) values each (\(try images.sampleShape())) but the model \(model.dimension)")
        }
        let y = try ImageData.dequantize(images, seed: seed)
        let method: DivergenceMethod = probes.map { .hutchinson(probes: $0, kind: .rademacher, seed: seed) } ?? .exact
        let r = try flow(model).logDensity(points: y, method: method, solver: solver, progress: progress)
        let bpd = r.logDensities.map { ImageData.bitsPerDimension(logDensity: $0, dimension: d) }
        let n = Double(bpd.count), mean = bpd.reduce(0, +) / n
        let variance = bpd.count > 1 ? bpd.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (n - 1) : .nan
        return BitsPerDim(mean: mean, standardError: (variance / n).squareRoot(), count: bpd.count,
                          statistics: r.statistics, perImage: bpd)
    }
}

/// `flowrt train --images`: a U-Net flow on dequantized images.
enum ImageTraining {
    /// A trainer of a U-Net on `set.train` minus its last `validation`
    /// images (held out, dequantized once with a fixed seed). Training
    /// samples come from `DequantizedImages`: sample k of the run is image
    /// `RandomStream(seed', .minibatch, k)` with its own dequantization noise.
    static func makeTrainer(set: (train: PixelArray, test: PixelArray?, name: String), options: TrainingOptions,
                            unet: UNetOptions, validation: Int) throws -> (trainer: Trainer, training: PixelArray, heldOut: PixelArray) {
        let shape = try set.train.sampleShape()
        let held = min(validation, set.train.count - 1)
        let trainPart = set.train.samples(0..<(set.train.count - held))
        let heldPart = set.train.samples((set.train.count - held)..<set.train.count)
        let (data, _) = try TrainingData.images(set.train, heldOut: held, seed: options.seed,
                                                batchSize: options.resolved(.images).batch)
        let graph = try unet.network(shape: shape, seed: options.seed).makeGraph()
        let trainer = try options.makeTrainer(
            graph: graph, data: data, defaults: .images,
            metadata: ["flowrt.architecture": "unet", "flowrt.images": set.name,
                       "flowrt.image_shape": shape.map(String.init).joined(separator: ",")])
        return (trainer, trainPart, heldPart)
    }

    /// Trains to the resolved step count with progress lines and a sample
    /// grid every `gridEvery` steps (and at the end) at `gridPath`. Stops
    /// early (keeping the finished steps) after `budget` seconds.
    static func train(_ trainer: Trainer, options: TrainingOptions, logInterval: Int, gridEvery: Int, gridPath: String,
                      budget: Double? = nil) throws {
        let r = options.resolved(.images), threads = trainer.configuration.threads
        var printer = ImageProgressPrinter(batch: r.batch, logInterval: logInterval)
        var gridSolver = SolverOptions.fixed(ButcherTableau.named("midpoint")!, steps: 10)
        gridSolver.threads = threads
        func writeGrid(_ note: String) throws {
            let (png, _, _) = try ImageFlow.grid(model: try trainer.model(), rows: 8, columns: 8, seed: options.seed,
                                                 solver: gridSolver)
            try png.write(to: gridPath)
            print("  grid: \(gridPath) (\(note), EMA weights, midpoint 10 steps)")
            fflush(stdout)
        }
        var gridError: Error?
        let start = Date()
        var overBudget = false
        do {
            try trainer.fit(steps: max(0, r.steps - trainer.stepCount)) { p in
                printer.show(p)
                if gridEvery > 0, p.step % gridEvery == 0, p.step < p.targetStep {
                    do { try writeGrid("step \(p.step)") } catch { gridError = error; return false }
                }
                if let budget, Date().timeIntervalSince(start) > budget { overBudget = true; return false }
                return true
            }
        } catch FlowError.cancelled where overBudget {
            print("stopped at step \(trainer.stepCount): the \(Int(budget!)) s training budget is spent")
        } catch FlowError.cancelled where gridError != nil {
            throw gridError!
        }
        try writeGrid("step \(trainer.stepCount), final")
    }

    static func run(images spec: String, options: TrainingOptions, unet: UNetOptions, out: String?, checkpoint: String?,
                    resume: String?, logInterval: Int, gridEvery: Int, grid: String?, validation: Int,
                    testImages: Int) throws {
        if let out { try Checked.writable(out, option: "--out", extensions: [".onnx"]) }
        if let checkpoint { try Checked.writable(checkpoint, option: "--checkpoint", extensions: []) }
        let gridPath = grid ?? out.map { String($0.dropLast(5)) + "-grid.png" } ?? "grid.png"
        try Checked.writable(gridPath, option: "--grid", extensions: [".png"])
        let set = try ImageSet.load(spec)
        let (trainer, trainPart, heldPart) = try makeTrainer(set: set, options: options, unet: unet, validation: validation)
        if let resume { try Checked.loading(resume) { try trainer.loadCheckpoint(from: resume) } }
        let r = options.resolved(.images), threads = trainer.configuration.threads
        print("training \(unet.summary(shape: try trainPart.sampleShape())), \(try trainer.model().parameterCount) parameters, on \(set.name): "
              + "\(trainPart.count) images \(try trainPart.sampleShape().map(String.init).joined(separator: "×")), "
              + "\(heldPart.count) held out; \(r.steps) steps of \(r.batch), lr \(r.lr), EMA \(r.ema), \(threads) threads")
        fflush(stdout)
        try train(trainer, options: options, logInterval: logInterval, gridEvery: gridEvery, gridPath: gridPath)
        let model = try trainer.model()
        if let checkpoint { try trainer.saveCheckpoint(to: checkpoint); print("checkpoint: \(checkpoint)") }
        if let out { try model.saveONNX(path: out); print("model: \(out)") }
        if testImages > 0 {
            let test = set.test ?? heldPart
            let subset = test.samples(0..<min(testImages, test.count))
            var solver = SolverOptions.dopri5(rtol: 1e-4, atol: 1e-4); solver.threads = threads
            let b = try ImageFlow.bitsPerDim(model: model, images: subset, seed: 0, probes: 1, solver: solver)
            print(String(format: "bits/dim on %d %@ images: %.4f ± %.4f (Hutchinson, 1 probe, dopri5 rtol 1e-4)",
                         b.count, set.test == nil ? "held-out" : "test", b.mean, b.standardError))
        }
    }
}

/// Progress of image training: plain lines (loss, held-out loss, images/s,
/// ETA) every `logInterval` steps (default: every 5% and at least every 30 s).
struct ImageProgressPrinter {
    var batch: Int
    var logInterval: Int
    let start = Date()
    var lastPrint = Date()
    var lastStep = -1

    mutating func show(_ p: TrainingProgress) {
        let done = p.step >= p.targetStep
        let every = logInterval > 0 ? logInterval : max(1, p.targetStep / 20)
        let now = Date()
        guard p.step % every == 0 || done || now.timeIntervalSince(lastPrint) > 30 || lastStep < 0 else { return }
        lastPrint = now; lastStep = p.step
        let held = p.heldOutLoss.map { String(format: "%.4f", $0.quadratic) } ?? "—"
        let eta = p.stepsPerSecond > 0 ? Double(p.targetStep - p.step) / p.stepsPerSecond : 0
        print(String(format: "step %6d/%d  loss %.4f  held-out %@  %.1f images/s  elapsed %@  ETA %@", p.step, p.targetStep,
                     p.trainLoss.quadratic, held, p.stepsPerSecond * Double(batch),
                     ProgressPrinter.duration(now.timeIntervalSince(start)), ProgressPrinter.duration(eta)))
        fflush(stdout)
    }
}
