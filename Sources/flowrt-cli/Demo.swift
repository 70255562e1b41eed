import ArgumentParser
import FlowRuntime
import Foundation

/// `flowrt demo`: the whole pipeline on the built-in checkerboard — train the
/// default flow, save it as ONNX, sample it, score fresh held-out data (exact
/// log-likelihood along the ODE) against the true entropy, and draw pictures.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a flow on the checkerboard, save, sample, score and plot it.")

    @Option(help: "Output folder.") var outDir = "demo-out"
    @Option(help: "Dataset: \(ToyDataset.allCases.filter { $0.entropy != nil }.map(\.rawValue).joined(separator: ", ")).")
    var toy = "checkerboard"
    @Option(parsing: .unconditional, help: "Training steps (≥ 0).", transform: Checked.integer(atLeast: 0)) var steps = 10000
    @Option(parsing: .unconditional, help: "Hidden units per layer (≥ 1).", transform: Checked.integer(atLeast: 1)) var width = 256
    @Option(parsing: .unconditional, help: "Samples per step (≥ 1).", transform: Checked.integer(atLeast: 1)) var batch = 1024
    @Option(parsing: .unconditional, help: "Sinusoidal time features K (0 = t appended to x).", transform: Checked.integer(atLeast: 0)) var timeFrequencies = 0
    @Option(help: "Peak learning rate.") var lr = 3e-3
    @Option(parsing: .unconditional, help: "Held-out samples scored for the NLL (≥ 1).", transform: Checked.integer(atLeast: 1)) var nllSamples = 4000
    @Option(parsing: .unconditional, help: "Worker threads (0 = all processors).", transform: Checked.integer(atLeast: 0)) var threads = 0
    @Option(parsing: .unconditional, help: "Random seed.", transform: Checked.seed) var seed: UInt64 = 0
    @Option(help: "Skip training: load this demo checkpoint (same options) and only score and plot.")
    var load: String?

    func run() throws {
        guard let dataset = ToyDataset(rawValue: toy), let density = dataset.density, let entropy = dataset.entropy else {
            throw ValidationError("--toy must be a dataset with a known density")
        }
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        try Checked.writable("\(outDir)/demo.onnx", option: "--out-dir", extensions: [".onnx"])
        let start = Date()
        var options = try TrainingOptions.parse([])
        options.steps = steps; options.width = width; options.batch = batch; options.lr = lr
        options.timeFrequencies = timeFrequencies
        options.seed = seed; options.threads = threads
        let nThreads = threads > 0 ? threads : Parallel.defaultThreads
        print("training a 2→\(width)×3→2 SiLU velocity on \(toy) (\(steps) steps, batch \(batch), \(nThreads) threads)")
        let trainer = try options.makeTrainer(dimension: 2, data: .source(dataset.source, heldOut: 4096))
        if let load {
            try Checked.loading(load) { try trainer.loadCheckpoint(from: load) }
        } else {
            var printer = ProgressPrinter()
            try trainer.fit(steps: steps) { printer.show($0) }
            printer.finish()
        }
        let trained = Date()
        let model = try trainer.model()
        if load == nil {
            let saved = try DemoSteps.save(trainer: trainer, model: model, outDir: outDir)
            print("saved: \(saved)")
        }

        // Held-out NLL against the true entropy.
        let points = density.samples(count: nllSamples, seed: seed &+ 0xD3E0)
        let logp = try DemoSteps.logLikelihood(model: model, points: points, threads: nThreads)
        let nll = -logp.reduce(0, +) / Double(logp.count)
        let se = (logp.map { ($0 + nll) * ($0 + nll) }.reduce(0, +) / Double(logp.count - 1) / Double(logp.count)).squareRoot()
        print(String(format: "held-out NLL %.4f ± %.4f nats; true entropy %.4f; excess %.4f nats",
                     nll, se, entropy, nll - entropy))

        // Pictures.
        let samples = try DemoSteps.sample(model: model, count: 20_000, seed: seed, threads: nThreads)
        let samplesPNG = "\(outDir)/\(toy)-samples.png"
        try Plot.histogram(samples.scalars, data: density.samples(count: 20_000, seed: seed &+ 7).scalars).write(to: samplesPNG)
        let densityPNG = "\(outDir)/\(toy)-density.png"
        try Plot.densities(model: { try DemoSteps.logLikelihood(model: model, points: $0, threads: nThreads) },
                           truth: { density.logDensity(of: $0) }).write(to: densityPNG)
        print("pictures: \(samplesPNG) (model | data), \(densityPNG) (model | true density)")
        print(String(format: "training %.1f s, total %.1f s", trained.timeIntervalSince(start), Date().timeIntervalSince(start)))
    }
}

/// The demo's evaluation steps, through the public `Flow` API.
enum DemoSteps {
    /// Saves the model as ONNX (and the training state as a checkpoint).
    static func save(trainer: Trainer, model: Model, outDir: String) throws -> String {
        try trainer.saveCheckpoint(to: "\(outDir)/demo.ckpt")
        try model.saveONNX(path: "\(outDir)/demo.onnx")
        return "\(outDir)/demo.onnx (model), \(outDir)/demo.ckpt (training state)"
    }

    static func flow(_ model: Model) throws -> Flow {
        try Flow(field: model, schedule: TrigSchedule())
    }

    static func solver(threads: Int) -> SolverOptions {
        var s = SolverOptions.dopri5(rtol: 1e-5, atol: 1e-5)
        s.threads = threads
        return s
    }

    /// log ρ1(x) per row: exact divergence along the backward ODE (dopri5).
    static func logLikelihood(model: Model, points: Tensor, threads: Int) throws -> [Double] {
        try flow(model).logDensity(points: points, method: .exact, solver: solver(threads: threads)).logDensities
    }

    /// Samples: base draws transported from t = 0 to 1 (dopri5).
    static func sample(model: Model, count n: Int, seed: UInt64, threads: Int) throws -> Tensor {
        try flow(model).sample(count: n, seed: seed, solver: solver(threads: threads)).points
    }
}

/// Side-by-side pictures of 2-D point sets and densities on [−5, 5]².
enum Plot {
    static let extent = 5.0, size = 256, gap = 8

    /// A colour map from dark blue through orange to pale yellow, u ∈ [0, 1].
    static func colour(_ u: Double) -> (UInt8, UInt8, UInt8) {
        let stops: [(Double, Double, Double)] = [(0.02, 0.02, 0.12), (0.35, 0.10, 0.45), (0.85, 0.30, 0.30),
                                                 (0.99, 0.65, 0.20), (0.99, 0.98, 0.75)]
        let x = max(0, min(1, u)) * Double(stops.count - 1)
        let i = min(Int(x), stops.count - 2), f = x - Double(i)
        let a = stops[i], b = stops[i + 1]
        func c(_ p: Double, _ q: Double) -> UInt8 { UInt8(max(0, min(255, 255 * (p + f * (q - p))))) }
        return (c(a.0, b.0), c(a.1, b.1), c(a.2, b.2))
    }

    /// Two panels (left, right), each `size`², from per-pixel intensities in [0, 1].
    static func panels(_ left: [Double], _ right: [Double]) -> PNGImage {
        var img = PNGImage(width: 2 * size + gap, height: size, fill: (255, 255, 255))
        for (p, values) in [left, right].enumerated() {
            for y in 0..<size { for x in 0..<size {
                img.set(x: p * (size + gap) + x, y: y, colour(values[y * size + x]))
            } }
        }
        return img
    }

    /// Pixel (x, y) of a point, y up; nil outside.
    static func pixel(_ px: Float, _ py: Float) -> (Int, Int)? {
        let x = Int((Double(px) + extent) / (2 * extent) * Double(size)), y = Int((extent - Double(py)) / (2 * extent) * Double(size))
        return x >= 0 && y >= 0 && x < size && y < size ? (x, y) : nil
    }

    /// Log-scaled 2-D histograms of model samples (left) and data (right).
    static func histogram(_ samples: [Float], data: [Float]) -> PNGImage {
        func counts(_ s: [Float]) -> [Double] {
            var c = [Double](repeating: 0, count: size * size)
            for i in 0..<(s.count / 2) { if let (x, y) = pixel(s[2 * i], s[2 * i + 1]) { c[y * size + x] += 1 } }
            let m = log1p(c.max() ?? 1)
            return c.map { log1p($0) / m }
        }
        return panels(counts(samples), counts(data))
    }

    /// Model density (left) and true density (right) on a 128² grid, each
    /// shown as ρ / max(true ρ) (clamped at 1).
    static func densities(model: (Tensor) throws -> [Double], truth: (Tensor) -> [Double]) throws -> PNGImage {
        let g = 128
        var grid = [Float]()
        for y in 0..<g { for x in 0..<g {
            grid.append(Float(-extent + (Double(x) + 0.5) * 2 * extent / Double(g)))
            grid.append(Float(extent - (Double(y) + 0.5) * 2 * extent / Double(g)))
        } }
        let points = Tensor(shape: [g * g, 2], scalars: grid)
        let lm = try model(points), lt = truth(points)
        let peak = lt.max() ?? 0
        func upsample(_ l: [Double]) -> [Double] {
            (0..<(size * size)).map { i in exp(l[(i / size * g / size) * g + (i % size) * g / size] - peak) }
        }
        return panels(upsample(lm), upsample(lt))
    }
}
