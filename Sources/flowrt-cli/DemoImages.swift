import ArgumentParser
import FlowRuntime
import Foundation

/// `flowrt demo-images`: a small U-Net flow on Fashion-MNIST from scratch
/// on the CPU — train, save, sample a grid next to real test images,
/// bits/dim on test images with its standard error, and a
/// nearest-training-neighbour check (`make demo-images`).
struct DemoImages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-images",
        abstract: "Train a small U-Net flow on Fashion-MNIST; sample grid, test bits/dim, nearest-neighbour check.")

    @Option(help: "Output folder.") var outDir = "demo-out"
    @Option(parsing: .unconditional, help: "Training steps.", transform: Checked.integer(atLeast: 0)) var steps = 2400
    @Option(parsing: .unconditional, help: "Images per step.", transform: Checked.integer(atLeast: 1)) var batch = 32
    @Option(help: "Peak learning rate.") var lr = 2e-3
    @Option(parsing: .unconditional, help: "U-Net channels of the first level.", transform: Checked.integer(atLeast: 2))
    var modelChannels = 16
    @Option(help: "U-Net feature-map heights with attention ('' = middle block only).") var attention = ""
    @Option(help: "Stop training after this many minutes even if steps remain (the machine may be busy).")
    var minutes = 8.0
    @Option(parsing: .unconditional, help: "Test images scored for bits/dim.", transform: Checked.integer(atLeast: 2))
    var testImages = 200
    @Option(parsing: .unconditional, help: "Hutchinson probes per test image.", transform: Checked.integer(atLeast: 1))
    var probes = 1
    @Option(parsing: .unconditional, help: "Worker threads (0 = all processors).", transform: Checked.integer(atLeast: 0))
    var threads = 0
    @Option(parsing: .unconditional, help: "Random seed.", transform: Checked.seed) var seed: UInt64 = 0

    func run() throws {
        let start = Date()
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let set = try ImageSet.load("fashion-mnist")
        let test = set.test!
        try ImageGrid.image(test.samples(0..<64), rows: 8, columns: 8).write(to: "\(outDir)/fashion-real.png")

        var options = try TrainingOptions.parse([])
        options.steps = steps; options.batch = batch; options.lr = lr; options.seed = seed; options.threads = threads
        options.warmup = min(100, steps / 10)
        options.ema = 0.995
        var unet = try UNetOptions.parse([])
        unet.modelChannels = modelChannels; unet.attention = attention
        let (trainer, trainPart, heldPart) = try ImageTraining.makeTrainer(set: set, options: options, unet: unet, validation: 1000)
        let nThreads = trainer.configuration.threads
        print("demo-images: \(unet.summary(shape: [1, 28, 28])), \(try trainer.model().parameterCount) parameters; Fashion-MNIST "
              + "\(trainPart.count) training images, \(heldPart.count) held out; \(steps) steps of \(batch) "
              + "(budget \(minutes) min), \(nThreads) threads")
        fflush(stdout)
        let trainStart = Date()
        try ImageTraining.train(trainer, options: options, logInterval: 0, gridEvery: 250,
                                gridPath: "\(outDir)/fashion-samples.png", budget: minutes * 60)
        let trainSeconds = Date().timeIntervalSince(trainStart)
        let model = try trainer.model()
        try model.saveONNX(path: "\(outDir)/fashion.onnx")
        print(String(format: "trained %d steps (%d images) in %.0f s: %.1f images/s; model: %@/fashion.onnx",
                     trainer.stepCount, trainer.stepCount * batch, trainSeconds,
                     Double(trainer.stepCount * batch) / trainSeconds, outDir))

        // Samples: a finer fixed-step solve than the progress grids.
        var sampler = SolverOptions.fixed(ButcherTableau.named("midpoint")!, steps: 20)
        sampler.threads = nThreads
        let sampleStart = Date()
        let (png, samples, _) = try ImageFlow.grid(model: model, rows: 8, columns: 8, seed: seed, solver: sampler)
        try png.write(to: "\(outDir)/fashion-samples.png")
        print(String(format: "samples: %@/fashion-samples.png (64 samples, midpoint 20 steps, %.1f s) next to %@/fashion-real.png (test images)",
                     outDir, Date().timeIntervalSince(sampleStart), outDir))

        // Nearest training neighbours: samples against test images, both
        // against the training images (pixel centres, scaled to [−1, 1]).
        let d = samples.shape[1]
        let reference = try ImageData.scaled(trainPart).scalars
        let clamped = samples.scalars.map { Swift.max(-1, Swift.min(1, $0)) }
        let fromSamples = ImageData.nearestNeighbours(queries: clamped, references: reference, dimension: d).distances
        let fromTest = ImageData.nearestNeighbours(queries: try ImageData.scaled(test.samples(0..<64)).scalars,
                                                   references: reference, dimension: d).distances
        func summary(_ v: [Double]) -> String {
            let s = v.sorted()
            return String(format: "min %.2f, median %.2f, mean %.2f", s.first!, s[s.count / 2], s.reduce(0, +) / Double(s.count))
        }
        print("nearest-training-neighbour L2 distance (pixels in [-1, 1], d = \(d)):")
        print("  64 samples:     \(summary(fromSamples))")
        print("  64 test images: \(summary(fromTest))")
        print(fromSamples.min()! < 0.25 * fromTest.min()!
              ? "  warning: a sample is much closer to a training image than any test image is (a near copy)"
              : "  samples are no closer to the training set than test images are: not copies")

        // Test bits/dim.
        var solver = SolverOptions.dopri5(rtol: 1e-4, atol: 1e-4)
        solver.threads = nThreads
        let bpdStart = Date()
        let b = try ImageFlow.bitsPerDim(model: model, images: test.samples(0..<min(testImages, test.count)), seed: 0,
                                         probes: probes, solver: solver)
        let nfe = Double(b.statistics.evaluations) / Double(max(1, b.statistics.samples))
        print(String(format: "test bits/dim %.3f ± %.3f (standard error over %d test images; dequantization seed 0, Hutchinson %d probe(s), dopri5 rtol 1e-4: %.0f evaluations per image, %.0f s)",
                     b.mean, b.standardError, b.count, probes, nfe, Date().timeIntervalSince(bpdStart)))
        if !b.statistics.isComplete { print("warning: " + b.statistics.incompleteDescription) }
        print(String(format: "total %.0f s (training %.0f s)", Date().timeIntervalSince(start), trainSeconds))
    }
}
