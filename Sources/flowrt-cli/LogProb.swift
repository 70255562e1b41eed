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
            """)

    @OptionGroup var flow: FlowModelOptions
    @Option(help: "Points [n, d]: .npy (float32/float64) or .csv.") var data: String
    @Option(help: "Write log-densities here (.npy float64 or .csv); default: print them.") var out: String?
    @Option(help: "Time t in [0, 1].") var time = 1.0
    @Option(help: "Hutchinson probes per sample (default: exact divergence).") var hutchinson: Int?
    @Option(help: "Hutchinson probe kind: rademacher or gaussian.") var probe = "rademacher"
    @Option(help: "Seed of the Hutchinson probes.") var seed: UInt64 = 0
    @OptionGroup var solver: SolverArguments

    func run() throws {
        let f = try flow.makeFlow()
        let x = try ArrayFile.readPoints(data, dimension: f.dimension)
        var method = DivergenceMethod.exact
        if let k = hutchinson {
            guard probe == "rademacher" || probe == "gaussian" else { throw ValidationError("--probe must be rademacher or gaussian") }
            method = .hutchinson(probes: k, kind: probe == "gaussian" ? .gaussian : .rademacher, seed: seed)
        }
        let start = Date()
        let r = try f.logDensity(points: x, time: time, method: method, solver: try solver.options(),
                                 progress: solver.progress())
        solver.report(r.statistics, seconds: Date().timeIntervalSince(start))
        let n = r.logDensities.count
        guard let out else {
            for i in 0..<n {
                print(r.standardErrors.map { "\(r.logDensities[i]),\($0[i])" } ?? "\(r.logDensities[i])")
            }
            return
        }
        if let se = r.standardErrors {
            if out.hasSuffix(".csv") {
                var both = [Double](); both.reserveCapacity(2 * n)
                for i in 0..<n { both += [r.logDensities[i], se[i]] }
                try ArrayFile.write(NumericArray(shape: [n, 2], values: both), to: out, float32: false,
                                    header: ["log_prob", "std_error"])
                return
            }
            let sePath = out.hasSuffix(".npy") ? String(out.dropLast(4)) + ".stderr.npy" : out + ".stderr"
            try ArrayFile.write(NumericArray(shape: [n], values: se), to: sePath, float32: false)
        }
        try ArrayFile.write(NumericArray(shape: [n], values: r.logDensities), to: out, float32: false, header: ["log_prob"])
    }
}
