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
              flowrt sample fm.onnx --grid 8x8 --out grid.png
            Output is streamed: the .npy header is written first, then blocks of
            65 536 samples as they finish, so -n 100000000 runs in bounded memory
            (the file appears at --out when complete). -n 0 writes an empty [0, d].
            """)

    @OptionGroup var flow: FlowModelOptions
    @Option(name: .short, parsing: .unconditional, help: "Number of samples (≥ 0; not with --grid).",
            transform: Checked.integer(atLeast: 0)) var n: Int?
    @Option(help: "Where to write the samples [n, d] (.npy float32 or .csv), or the grid (.png) with --grid.") var out: String
    @Option(help: "Image models: ROWSxCOLUMNS samples as a PNG grid at --out (pixels (y + 1)·128 clamped to 0...255), e.g. 8x8.")
    var grid: String?
    @Option(parsing: .unconditional, help: "Seed of the base samples (sample i depends on (seed, i) only).",
            transform: Checked.seed) var seed: UInt64 = 0
    @Option(help: "Also write log ρ1 of each sample, integrated in the same pass (.npy float64 or .csv).")
    var logProb: String?
    @OptionGroup var solver: SolverArguments

    func run() throws {
        if let grid {
            guard n == nil, logProb == nil else { throw ValidationError("--grid draws ROWS×COLUMNS samples: drop -n and --log-prob") }
            try Checked.writable(out, option: "--out", extensions: [".png"])
            let (rows, columns) = try ImageFlow.gridSize(grid)
            let options = try solver.options()
            let model = try ModelFile.load(flow.model)
            let start = Date()
            let (png, _, statistics) = try ImageFlow.grid(model: model, rows: rows, columns: columns, seed: seed,
                                                          solver: options, progress: solver.progress())
            solver.report(statistics, seconds: Date().timeIntervalSince(start))
            try png.write(to: out)
            print("grid: \(out) (\(rows)×\(columns) samples of \(model.sampleShape.map(String.init).joined(separator: "×")))")
            return
        }
        guard let n else { throw ValidationError("give -n N (or --grid ROWSxCOLUMNS for an image model)") }
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
        let precision = (f.field as? Model)?.effectivePrecision(likelihood: logProb != nil)
        solver.report(statistics, seconds: Date().timeIntervalSince(start), precision: precision)
        try points.finish()
        try logs?.finish()
    }
}
