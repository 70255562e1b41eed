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
              flowrt logprob fm.onnx --bpd --images fashion-mnist --probes 1 --limit 500
            A C-order .npy input is read in blocks of 65 536 rows and the output
            written as they finish (bounded memory for any file size); CSV input
            is read whole.
            """)

    @OptionGroup var flow: FlowModelOptions
    @Option(help: "Points [n, d]: .npy (float32/float64) or .csv.") var data: String?
    @Flag(help: "Bits per dimension of 8-bit images (with --images): dequantized with --seed, bpd = −log p/(d ln 2) + 7, mean ± standard error.")
    var bpd = false
    @Option(help: "With --bpd: fashion-mnist (its test split), digits (its test split), or an IDX (.gz) / uint8 .npy file.")
    var images: String?
    @Option(parsing: .unconditional, help: "With --bpd: Hutchinson probes per image (default 1; 0 = exact divergence, d forward passes per step).",
            transform: Checked.integer(atLeast: 0)) var probes = 1
    @Option(parsing: .unconditional, help: "With --bpd: score the first N images only.", transform: Checked.integer(atLeast: 1))
    var limit: Int?
    @Flag(help: "The CSV's first row is a header (otherwise only a row without any number is).") var header = false
    @Option(help: "Write log-densities here (.npy float64 or .csv); default: print them.") var out: String?
    @Option(help: "Time t in [0, 1].") var time = 1.0
    @Option(parsing: .unconditional, help: "Hutchinson probes per sample, \(Limits.probes.lowerBound)...\(Limits.probes.upperBound) (default: exact divergence).",
            transform: Checked.integer(atLeast: 1)) var hutchinson: Int?
    @Option(help: "Hutchinson probe kind: rademacher or gaussian.") var probe = "rademacher"
    @Option(parsing: .unconditional, help: "Seed of the Hutchinson probes.", transform: Checked.seed) var seed: UInt64 = 0
    @OptionGroup var solver: SolverArguments

    func run() throws {
        if bpd || images != nil {
            guard bpd, let images, data == nil, out == nil, hutchinson == nil else {
                throw ValidationError("bits per dimension: give --bpd --images SET (not --data, --out or --hutchinson; --probes K)")
            }
            let all = try ImageSet.evaluation(images)
            let subset = all.samples(0..<min(limit ?? all.count, all.count))
            let model = try ModelFile.load(flow.model)
            let options = try solver.options()
            let start = Date()
            let b = try ImageFlow.bitsPerDim(model: model, images: subset, seed: seed, probes: probes > 0 ? probes : nil,
                                             solver: options, progress: solver.progress())
            solver.report(b.statistics, seconds: Date().timeIntervalSince(start))
            print(String(format: "bits/dim %.4f ± %.4f (standard error over %d images; %@, %@, dequantization seed %llu)",
                         b.mean, b.standardError, b.count,
                         probes > 0 ? "Hutchinson \(probes) probe\(probes == 1 ? "" : "s")" : "exact divergence",
                         solver.method, seed))
            if !b.statistics.isComplete { throw ValidationError("the solver did not finish every image: " + b.statistics.incompleteDescription) }
            return
        }
        guard let data else { throw ValidationError("give --data POINTS (or --bpd --images SET)") }
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
