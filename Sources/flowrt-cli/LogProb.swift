import ArgumentParser
import FlowRuntime
import Foundation

/// `flowrt logprob`: log-densities of points under a flow.
struct LogProb: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logprob",
        abstract: "Log-density log ρ_t(x) of points (default t = 1, the model density).",
        discussion: """
            Integrates (x, Δ) with dΔ/ds = ∇·v backward from t to 0 and adds the
            base log-density. Exact divergence by default; --hutchinson K uses K
            probes and also writes standard errors (second CSV column / a second
            .npy named *.stderr.npy).
            Examples:
              flowrt logprob model.onnx --data points.npy --out lp.npy
              flowrt logprob model.onnx --data points.csv --time 0.5 --hutchinson 8
            A C-order .npy input is read in blocks of 65 536 rows and the output
            written as they finish (bounded memory for any file size); CSV input
            is read whole.
            """)

    @OptionGroup var flow: FlowModelOptions
    @Option(help: "Points [n, d]: .npy (float32/float64) or .csv.") var data: String
    @Flag(help: "The CSV's first row is a header (otherwise only a row without any number is).") var header = false
    @Option(help: "Write log-densities here (.npy float64 or .csv); default: print them.") var out: String?
    @Option(help: "Time t in [0, 1].") var time = 1.0
    @Option(parsing: .unconditional, help: "Hutchinson probes per sample, 1...4096 (default: exact divergence).",
            transform: Checked.integer(atLeast: 1)) var hutchinson: Int?
    @Option(help: "Hutchinson probe kind: rademacher or gaussian.") var probe = "rademacher"
    @Option(parsing: .unconditional, help: "Seed of the Hutchinson probes.", transform: Checked.seed) var seed: UInt64 = 0
    @OptionGroup var solver: SolverArguments

    func run() throws {
        let sePath: String?
        if let out {
            try Checked.writable(out, option: "--out", extensions: [".npy", ".csv"])
            sePath = hutchinson == nil || out.hasSuffix(".csv") ? nil
                : (out.hasSuffix(".npy") ? String(out.dropLast(4)) + ".stderr.npy" : out + ".stderr")
            if let sePath { try Checked.writable(sePath, option: "--out (standard errors)", extensions: []) }
        } else {
            sePath = nil
        }
        var method = DivergenceMethod.exact
        if let k = hutchinson {
            guard probe == "rademacher" || probe == "gaussian" else { throw ValidationError("--probe must be rademacher or gaussian") }
            method = .hutchinson(probes: k, kind: probe == "gaussian" ? .gaussian : .rademacher, seed: seed)
        }
        let options = try solver.options()
        let f = try flow.makeFlow()
        let input = try PointRows(path: data, dimension: f.dimension, header: header)
        let n = input.count
        let values = try out.map {
            try RowWriter(path: $0, rows: n, columns: sePath == nil && hutchinson != nil ? 2 : nil, float32: false,
                          header: sePath == nil && hutchinson != nil ? ["log_prob", "std_error"] : ["log_prob"])
        }
        let errors = try sePath.map { try RowWriter(path: $0, rows: n, columns: nil, float32: false) }
        let start = Date()
        let statistics = try f.logDensityBlocks(count: n, time: time, method: method, solver: options,
                                                progress: solver.progress(), points: input.rows) { _, r in
            guard let values else {
                for i in r.logDensities.indices {
                    print(r.standardErrors.map { "\(r.logDensities[i]),\($0[i])" } ?? "\(r.logDensities[i])")
                }
                return
            }
            if let se = r.standardErrors {
                if let errors { try errors.append(se); try values.append(r.logDensities) }
                else { try values.append(pairs: r.logDensities, se) }
            } else {
                try values.append(r.logDensities)
            }
        }
        solver.report(statistics, seconds: Date().timeIntervalSince(start))
        try errors?.finish()
        try values?.finish()
    }
}
