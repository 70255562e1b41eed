import ArgumentParser
import FlowRuntime
import Foundation

/// `flowrt sample`: draw samples of the model density (base → data).
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw samples from a flow (integrate base samples from t = 0 to 1).",
        discussion: """
            Examples:
              flowrt sample model.onnx -n 10000 --out samples.npy
              flowrt sample model.onnx -n 1000 --out x.csv --log-prob lp.npy --rtol 1e-6
              flowrt sample 'mlp:dim=2,seed=1' -n 10000 --method rk4 --steps 100 --out x.npy
            """)

    @OptionGroup var flow: FlowModelOptions
    @Option(name: .short, help: "Number of samples.") var n: Int
    @Option(help: "Where to write the samples [n, d] (.npy float32 or .csv).") var out: String
    @Option(help: "Seed of the base samples (sample i depends on (seed, i) only).") var seed: UInt64 = 0
    @Option(help: "Also write log ρ1 of each sample, integrated in the same pass (.npy float64 or .csv).")
    var logProb: String?
    @OptionGroup var solver: SolverArguments

    func run() throws {
        guard n > 0 else { throw ValidationError("-n must be > 0") }
        let f = try flow.makeFlow()
        let start = Date()
        let r = try f.sample(count: n, seed: seed, solver: try solver.options(),
                             logDensity: logProb == nil ? nil : .exact, progress: solver.progress())
        solver.report(r.statistics, seconds: Date().timeIntervalSince(start))
        try ArrayFile.write(NumericArray(r.points), to: out, float32: true)
        if let logProb, let values = r.logDensities {
            try ArrayFile.write(NumericArray(shape: [n], values: values), to: logProb, float32: false, header: ["log_prob"])
        }
    }
}
