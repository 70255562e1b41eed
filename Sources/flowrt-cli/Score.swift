import ArgumentParser
import FlowRuntime
import Foundation

/// `flowrt score`: the score ∇ log ρ_t(x) of points, from the velocity.
struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Score s_t(x) = ∇ log ρ_t(x) of points from the velocity (Gaussian base).",
        discussion: """
            s = (β'x − βv(t, x)) / (α(α'β − αβ')) for the N(0, I) base. Times where
            α(α'β − αβ') vanishes (t = 1) are refused, not clamped.
            Example:
              flowrt score model.onnx --data points.npy --time 0.5 --out scores.npy
            """)

    @OptionGroup var flow: FlowModelOptions
    @Option(help: "Points [n, d]: .npy (float32/float64) or .csv.") var data: String
    @Flag(help: "The CSV's first row is a header (otherwise only a row without any number is).") var header = false
    @Option(help: "Time t in [0, 1).") var time = 0.5
    @Option(help: "Where to write the scores [n, d] (.npy float32 or .csv).") var out: String

    func run() throws {
        try Checked.writable(out, option: "--out", extensions: [".npy", ".csv"])
        let f = try flow.makeFlow()
        let x = try ArrayFile.readPoints(data, dimension: f.dimension, header: header)
        let s = try f.score(times: try HostMemory.array(repeating: time, count: x.shape[0], for: "score times"), points: x)
        try ArrayFile.write(NumericArray(s), to: out, float32: true)
    }
}

/// `flowrt sample-sde`: samples by the SDE with the flow's marginals.
struct SampleSDE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample-sde",
        abstract: "Draw samples with dX = [v + ε s] dt + √(2ε) dW (same marginals as the flow).",
        discussion: """
            ε is tapered to 0 where α → 0 (t → 1) and the last step is an ODE step.
            Example:
              flowrt sample-sde model.onnx -n 10000 --epsilon 1 --steps 200 --out x.npy
            """)

    @OptionGroup var flow: FlowModelOptions
    @Option(name: .short, parsing: .unconditional, help: "Number of samples (≥ 0).",
            transform: Checked.integer(atLeast: 0)) var n: Int
    @Option(help: "Where to write the samples [n, d] (.npy float32 or .csv).") var out: String
    @Option(parsing: .unconditional, help: "Seed of the base samples and Brownian increments.",
            transform: Checked.seed) var seed: UInt64 = 0
    @Option(help: "Constant diffusion ε0 ≥ 0 (before the taper).") var epsilon = 1.0
    @Option(parsing: .unconditional, help: "Uniform steps over [0, 1] (≥ 1).",
            transform: Checked.integer(atLeast: 1)) var steps = 200
    @Option(help: "heun or euler-maruyama.") var method = "heun"
    @Option(help: "Taper width in units of |α(α'β − αβ')|.") var taper = 0.1
    @Option(parsing: .unconditional, help: "Worker threads, ≥ 1 (default: all processors).",
            transform: Checked.integer(atLeast: 1)) var threads: Int?

    func run() throws {
        try Checked.writable(out, option: "--out", extensions: [".npy", ".csv"])
        guard let m = SDEOptions.Method(rawValue: method) else { throw ValidationError("--method must be heun or euler-maruyama") }
        var options = SDEOptions(method: m, steps: steps, diffusion: .constant(epsilon), taperScale: taper)
        if let threads { options.threads = threads }
        let start = Date()
        let r = try flow.makeFlow().sampleSDE(count: n, seed: seed, options: options)
        FileHandle.standardError.write(String(format: "%d samples: %d evaluations per sample; %.3f s\n", n,
                                              r.evaluationsPerSample, Date().timeIntervalSince(start)).data(using: .utf8)!)
        if !r.nonFiniteSamples.isEmpty {
            FileHandle.standardError.write("warning: \(r.nonFiniteSamples.count) samples became non-finite; lower --epsilon or raise --steps\n".data(using: .utf8)!)
        }
        try ArrayFile.write(NumericArray(r.points), to: out, float32: true)
    }
}
