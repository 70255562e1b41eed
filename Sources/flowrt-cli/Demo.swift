import ArgumentParser
import FlowRuntime
import Foundation

/// `flowrt demo`: the whole pipeline on the built-in checkerboard — train the
/// default flow, save it, sample it, score held-out data against the true
/// entropy, and draw pictures.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a flow on the checkerboard, save, sample, score and plot it.")

    @Option(help: "Output folder.") var outDir = "demo-out"
    @Option(help: "Dataset: \(ToyDataset.allCases.filter { $0.entropy != nil }.map(\.rawValue).joined(separator: ", ")).")
    var toy = "checkerboard"
    @Option(help: "Training steps.") var steps = 6000
    @Option(help: "Hidden units per layer.") var width = 256
    @Option(help: "Samples per step.") var batch = 1024
    @Option(help: "Sinusoidal time features K (0 = t appended to x).") var timeFrequencies = 0
    @Option(help: "Peak learning rate.") var lr = 2e-3
    @Option(help: "Held-out samples scored for the NLL.") var nllSamples = 4000
    @Option(help: "RK4 steps of the likelihood and sampling ODE.") var odeSteps = 40
    @Option(help: "Worker threads (0 = all processors).") var threads = 0
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Skip training: load this demo checkpoint (same options) and only score and plot.")
    var load: String?

    func run() throws {
        guard let dataset = ToyDataset(rawValue: toy), let density = dataset.density, let entropy = dataset.entropy else {
            throw ValidationError("--toy must be a dataset with a known density")
        }
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let start = Date()
        var options = try TrainingOptions.parse([])
        options.steps = steps; options.width = width; options.batch = batch; options.lr = lr
        options.timeFrequencies = timeFrequencies
        options.seed = seed; options.threads = threads
        let nThreads = threads > 0 ? threads : Parallel.defaultThreads
        print("training a 2→\(width)×3→2 SiLU velocity on \(toy) (\(steps) steps, batch \(batch), \(nThreads) threads)")
        let trainer = try options.makeTrainer(dimension: 2, data: .source(dataset.source, heldOut: 4096))
        if let load {
            try trainer.loadCheckpoint(from: load)
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
        let points = density.samples(nllSamples, seed: seed &+ 0xD3E0)
        let logp = try DemoSteps.logLikelihood(model: model, points: points, odeSteps: odeSteps, threads: nThreads)
        let nll = -logp.reduce(0, +) / Double(logp.count)
        let se = (logp.map { ($0 + nll) * ($0 + nll) }.reduce(0, +) / Double(logp.count - 1) / Double(logp.count)).squareRoot()
        print(String(format: "held-out NLL %.4f ± %.4f nats; true entropy %.4f; excess %.4f nats",
                     nll, se, entropy, nll - entropy))

        // Pictures.
        let samples = try DemoSteps.sample(model: model, count: 20_000, seed: seed, odeSteps: odeSteps, threads: nThreads)
        let samplesPNG = "\(outDir)/\(toy)-samples.png"
        try Plot.histogram(samples.scalars, data: density.samples(20_000, seed: seed &+ 7).scalars).write(to: samplesPNG)
        let densityPNG = "\(outDir)/\(toy)-density.png"
        try Plot.densities(model: { try DemoSteps.logLikelihood(model: model, points: $0, odeSteps: odeSteps, threads: nThreads) },
                           truth: { density.logDensities($0) }).write(to: densityPNG)
        print("pictures: \(samplesPNG) (model | data), \(densityPNG) (model | true density)")
        print(String(format: "training %.1f s, total %.1f s", trained.timeIntervalSince(start), Date().timeIntervalSince(start)))
    }
}

/// The demo's steps that wait on other issues (ONNX export, the transport
/// `Flow`): each is one small function so that only its body changes.
enum DemoSteps {
    /// Saves the model: a checkpoint until ONNX export is available.
    static func save(trainer: Trainer, model: Model, outDir: String) throws -> String {
        let path = "\(outDir)/demo.ckpt"
        try trainer.saveCheckpoint(to: path)
        return path
    }

    /// log ρ1(x) per row: integrate the augmented ODE (x, ∫ div) from t = 1
    /// back to t = 0 with RK4 and add log N(x_0; 0, I).
    static func logLikelihood(model: Model, points: Tensor, odeSteps: Int, threads: Int) throws -> [Double] {
        let n = points.shape[0], d = model.dimension
        var x = points.scalars, integral = [Double](repeating: 0, count: n)
        let h = -1.0 / Double(odeSteps)
        for s in 0..<odeSteps {
            let t = 1 + Double(s) * h
            var kx: [[Float]] = [], kd: [[Double]] = []
            for (c, dt) in [(0.0, 0.0), (0.5, 0.5), (0.5, 0.5), (1.0, 1.0)].enumerated().map({ $0.element }) {
                var xs = x
                if c > 0 { for i in 0..<(n * d) { xs[i] = x[i] + Float(c * h) * kx.last![i] } }
                var v = [Float](repeating: 0, count: n * d), div = [Double](repeating: 0, count: n)
                let times = [Double](repeating: t + dt * h, count: n)
                times.withUnsafeBufferPointer { tb in xs.withUnsafeBufferPointer { xb in v.withUnsafeMutableBufferPointer { vb in
                    div.withUnsafeMutableBufferPointer { db in
                        model.velocityDivergence(times: tb, points: xb, into: vb, divergences: db, threads: threads)
                    } } } }
                kx.append(v); kd.append(div)
            }
            for i in 0..<(n * d) { x[i] += Float(h / 6) * (kx[0][i] + 2 * kx[1][i] + 2 * kx[2][i] + kx[3][i]) }
            for i in 0..<n { integral[i] += h / 6 * (kd[0][i] + 2 * kd[1][i] + 2 * kd[2][i] + kd[3][i]) }
        }
        // ∫_1^0 div dt = −∫_0^1 div dt, so log ρ1 = log ρ0(x0) + integral.
        let base = StandardNormal(dimension: d).logDensities(Tensor(shape: [n, d], scalars: x))
        return (0..<n).map { base[$0] + integral[$0] }
    }

    /// Samples: RK4 from base draws at t = 0 to t = 1.
    static func sample(model: Model, count n: Int, seed: UInt64, odeSteps: Int, threads: Int) throws -> Tensor {
        let d = model.dimension
        var x = StandardNormal(dimension: d).samples(n, seed: seed).scalars
        let h = 1.0 / Double(odeSteps)
        func f(_ t: Double, _ y: [Float]) -> [Float] {
            var v = [Float](repeating: 0, count: n * d)
            let times = [Double](repeating: t, count: n)
            times.withUnsafeBufferPointer { tb in y.withUnsafeBufferPointer { yb in v.withUnsafeMutableBufferPointer {
                model.velocity(times: tb, points: yb, into: $0, threads: threads) } } }
            return v
        }
        for s in 0..<odeSteps {
            let t = Double(s) * h
            let k1 = f(t, x)
            let k2 = f(t + h / 2, zip(x, k1).map { $0 + Float(h / 2) * $1 })
            let k3 = f(t + h / 2, zip(x, k2).map { $0 + Float(h / 2) * $1 })
            let k4 = f(t + h, zip(x, k3).map { $0 + Float(h) * $1 })
            for i in 0..<(n * d) { x[i] += Float(h / 6) * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]) }
        }
        return Tensor(shape: [n, d], scalars: x)
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
