import ArgumentParser
import FlowRuntime
import Foundation

/// `flowrt conditional …`: the flow commands of a conditional model, with a
/// context per point (`--context C.npy|C.csv`).
struct Conditional: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample, evaluate log-densities and encode with a conditional flow p(x | c).",
        discussion: """
            For a model with a context input (flowrt.context_dim > 0; class labels
            as integer floats). --context holds one context row per point [n, m]
            (.npy or .csv); `sample` also takes a single row for all samples.
            Simulation-based inference: θ as the points, the observation as the context.
            Examples:
              flowrt conditional sample posterior.onnx --context x_obs.csv -n 10000 --out theta.npy
              flowrt conditional logprob posterior.onnx --data theta.npy --context x.npy --out lp.npy
              flowrt conditional encode model.onnx --data x.npy --context c.npy --out z.npy
            """,
        subcommands: [ConditionalSample.self, ConditionalLogProb.self, ConditionalEncode.self])
}

/// The `--context` file: the flow's context dimension m columns.
struct ContextOptions: ParsableArguments {
    @Option(help: "Contexts [n, m] (.npy float32/float64 or .csv), one row per point (class labels as numbers).")
    var context: String
    @Flag(help: "The context CSV's first row is a header.") var contextHeader = false

    /// The contexts, streamed by rows, after checking the flow is conditional.
    /// The points of `--data` and one context row per point.
    func pointsAndRows(data: String, header: Bool, for flow: Flow) throws -> (points: PointRows, contexts: PointRows) {
        let input = try PointRows(path: data, dimension: flow.dimension, header: header)
        let c = try rows(for: flow)
        guard c.count == input.count else {
            throw ValidationError("--context has \(c.count) rows but --data \(input.count): one context per point")
        }
        return (input, c)
    }

    func rows(for flow: Flow) throws -> PointRows {
        let m = try dimension(flow)
        return try PointRows(path: context, dimension: m, header: contextHeader)
    }

    func dimension(_ flow: Flow) throws -> Int {
        guard flow.contextDimension > 0 else {
            throw ValidationError("the model is unconditional (no context input): use the plain command without --context")
        }
        return flow.contextDimension
    }
}

struct ConditionalSample: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Draw samples of p(x | c): one per context row, or n for a single context row.")

    @OptionGroup var flow: FlowModelOptions
    @OptionGroup var contexts: ContextOptions
    @Option(name: .short, parsing: .unconditional, help: "Number of samples (default: the context rows).",
            transform: Checked.integer(atLeast: 0)) var n: Int?
    @Option(help: "Where to write the samples [n, d] (.npy float32 or .csv).") var out: String
    @Option(parsing: .unconditional, help: "Seed of the base samples.", transform: Checked.seed) var seed: UInt64 = 0
    @Option(help: "Also write log p(x | c) of each sample (.npy float64 or .csv).") var logProb: String?
    @Option(help: "Guidance weight w for label models: (1 + w) v(c) − w v(∅), ∅ the last class (no --log-prob).")
    var guidance = 0.0
    @OptionGroup var solver: SolverArguments

    func run() throws {
        try Checked.writable(out, option: "--out", extensions: [".npy", ".csv"])
        if let logProb { try Checked.writable(logProb, option: "--log-prob", extensions: [".npy", ".csv"]) }
        let options = try solver.options()
        let f = try flow.makeFlow()
        let c = try ArrayFile.readPoints(contexts.context, dimension: contexts.dimension(f), header: contexts.contextHeader)
        let count = n ?? c.shape[0]
        guard c.shape[0] == count || c.shape[0] == 1 else {
            throw ValidationError("--context has \(c.shape[0]) rows: give one row per sample (\(count)) or one row for all")
        }
        let points = try RowWriter(path: out, rows: count, columns: f.dimension, float32: true)
        let logs = try logProb.map { try RowWriter(path: $0, rows: count, columns: nil, float32: false, header: ["log_prob"]) }
        let start = Date()
        let statistics = try f.sampleBlocks(count: count, seed: seed, contexts: c, guidance: guidance, solver: options,
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

struct ConditionalLogProb: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logprob",
        abstract: "Log-densities log p_t(x_i | c_i) (exact divergence; default t = 1).")

    @OptionGroup var flow: FlowModelOptions
    @OptionGroup var contexts: ContextOptions
    @Option(help: "Points [n, d]: .npy (float32/float64) or .csv.") var data: String
    @Flag(help: "The data CSV's first row is a header.") var header = false
    @Option(help: "Write log-densities here (.npy float64 or .csv); default: print them.") var out: String?
    @Option(help: "Time t in [0, 1].") var time = 1.0
    @OptionGroup var solver: SolverArguments

    func run() throws {
        if let out { try Checked.writable(out, option: "--out", extensions: [".npy", ".csv"]) }
        let options = try solver.options()
        let f = try flow.makeFlow()
        let (input, c) = try contexts.pointsAndRows(data: data, header: header, for: f)
        let values = try out.map { try RowWriter(path: $0, rows: input.count, columns: nil, float32: false, header: ["log_prob"]) }
        let start = Date()
        let statistics = try f.logDensityBlocks(count: input.count, time: time, method: .exact, solver: options,
                                                progress: solver.progress(), contexts: c.rows, points: input.rows) { _, r in
            guard let values else { for v in r.logDensities { print(v) }; return }
            try values.append(r.logDensities)
        }
        solver.report(statistics, seconds: Date().timeIntervalSince(start))
        try values?.finish()
    }
}

struct ConditionalEncode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Encode points given their contexts: integrate from t = 1 back to t = 0.")

    @OptionGroup var flow: FlowModelOptions
    @OptionGroup var contexts: ContextOptions
    @Option(help: "Points [n, d]: .npy (float32/float64) or .csv.") var data: String
    @Flag(help: "The data CSV's first row is a header.") var header = false
    @Option(help: "Where to write the codes [n, d] (.npy float32 or .csv).") var out: String
    @OptionGroup var solver: SolverArguments

    func run() throws {
        try Checked.writable(out, option: "--out", extensions: [".npy", ".csv"])
        let options = try solver.options()
        let f = try flow.makeFlow()
        let (input, c) = try contexts.pointsAndRows(data: data, header: header, for: f)
        let codes = try RowWriter(path: out, rows: input.count, columns: f.dimension, float32: true)
        let start = Date()
        let statistics = try f.transportBlocks(count: input.count, from: 1, to: 0, solver: options,
                                               progress: solver.progress(), contexts: c.rows, points: input.rows) { _, r in
            try codes.append(r.points.scalars)
        }
        solver.report(statistics, seconds: Date().timeIntervalSince(start))
        try codes.finish()
    }
}
