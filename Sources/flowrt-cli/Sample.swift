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
            Output is streamed: the .npy header is written first, then blocks of
            65 536 samples as they finish, so -n 100000000 runs in bounded memory
            (the file appears at --out when complete). -n 0 writes an empty [0, d].
            """)

    @OptionGroup var flow: FlowModelOptions
    @Option(name: .short, parsing: .unconditional, help: "Number of samples (≥ 0).",
            transform: Checked.integer(atLeast: 0)) var n: Int
    @Option(help: "Where to write the samples [n, d] (.npy float32 or .csv).") var out: String
    @Option(parsing: .unconditional, help: "Seed of the base samples (sample i depends on (seed, i) only).",
            transform: Checked.seed) var seed: UInt64 = 0
    @Option(help: "Also write log ρ1 of each sample, integrated in the same pass (.npy float64 or .csv).")
    var logProb: String?
    @OptionGroup var solver: SolverArguments

    func run() throws {
        try Checked.writable(out, option: "--out", extensions: [".npy", ".csv"])
        if let logProb { try Checked.writable(logProb, option: "--log-prob", extensions: [".npy", ".csv"]) }
        let options = try solver.options()
        let f = try flow.makeFlow()
        let points = try RowWriter(path: out, rows: n, columns: f.dimension, float32: true)
        let logs = try logProb.map { try RowWriter(path: $0, rows: n, columns: nil, float32: false, header: ["log_prob"]) }
        let start = Date()
        let statistics = try f.sampleBlocks(count: n, seed: seed, solver: options,
                                            logDensity: logProb == nil ? nil : .exact,
                                            progress: solver.progress()) { _, block in
            try points.append(block.points.scalars)
            if let logs, let values = block.logDensities { try logs.append(values) }
        }
        solver.report(statistics, seconds: Date().timeIntervalSince(start))
        try points.finish()
        try logs?.finish()
    }
}
