import ArgumentParser
import FlowRuntime
import Foundation

/// The MODEL argument and flow options shared by `sample`, `logprob`, `encode`.
struct FlowModelOptions: ParsableArguments {
    @Argument(help: ArgumentHelp(
        "The velocity model: an .onnx file, or a native random MLP 'mlp:dim=2,width=256,depth=3,seed=0' (for tests and benchmarks).",
        valueName: "MODEL"))
    var model: String

    @Option(help: "The interpolant the model was trained with: trig or linear (default: the model's flowrt.interpolant metadata, else trig). Recorded only: sampling and log-densities use the velocity alone.")
    var interpolant: String?

    @Option(help: "Arithmetic of the velocity network when sampling, encoding and in sample-sde: float32 or bf16 (bfloat16 products, float32 accumulation, about 2x faster on wide layers; float32 on CPUs without AVX512_BF16: see `flowrt info`).")
    var precision = "float32"

    @Option(help: "Arithmetic of the network for log-densities (logprob, sample --log-prob): float32 (default) or bf16 (log-densities move by about 1e-3 nats per point).")
    var likelihoodPrecision = "float32"

    /// A --precision value, or a validation error naming the choices.
    static func parsePrecision(_ text: String, option: String) throws -> Precision {
        guard let p = Precision(name: text) else { throw ValidationError("\(option) must be float32 or bf16, got '\(text)'") }
        return p
    }

    /// The flow: the model (with the requested precisions), a standard-normal base, the schedule.
    func makeFlow() throws -> Flow {
        let model = try ModelFile.load(self.model)
        model.setPrecision(try Self.parsePrecision(precision, option: "--precision"))
        model.setPrecision(try Self.parsePrecision(likelihoodPrecision, option: "--likelihood-precision"), likelihood: true)
        let schedule: (any Schedule)?
        if let interpolant {
            guard let kind = ScheduleKind(rawValue: interpolant) else {
                throw ValidationError("--interpolant must be \(ScheduleKind.allCases.map(\.rawValue).joined(separator: " or ")), got '\(interpolant)'")
            }
            schedule = kind.schedule
        } else {
            // The file's schedule (a learned Fourier one too); one it cannot
            // rebuild is not needed to sample or evaluate, so it is left out.
            schedule = (try? ScheduleMetadata.schedule(from: model.metadata)) ?? nil
        }
        return try Flow(field: model, schedule: schedule)
    }
}

/// Loading velocity models named on the command line.
enum ModelFile {
    /// An .onnx path (through the ONNX importer) or an `mlp:` specification.
    static func load(_ spec: String) throws -> Model {
        if spec.hasPrefix("mlp:") { return try mlp(String(spec.dropFirst(4))) }
        guard FileManager.default.fileExists(atPath: spec) else { throw ValidationError("model file '\(spec)' does not exist") }
        guard spec.hasSuffix(".onnx") else { throw ValidationError("'\(spec)': expected an .onnx model or 'mlp:…'") }
        return try Checked.loading(spec) { try Model.loadONNX(path: spec) }
    }

    /// `dim=2,width=256,depth=3,seed=0,activation=silu` (any subset).
    static func mlp(_ text: String) throws -> Model {
        var dim = 2, width = 256, depth = 3, seed: UInt64 = 0
        var activation = UnaryFunction.silu
        for pair in text.split(separator: ",") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw ValidationError("mlp option '\(pair)' is not key=value") }
            switch kv[0] {
            case "dim": dim = try int(kv)
            case "width": width = try int(kv)
            case "depth": depth = try int(kv)
            case "seed": seed = UInt64(try int(kv))
            case "activation":
                switch kv[1] {
                case "silu": activation = .silu
                case "tanh": activation = .tanh
                case "relu": activation = .relu
                case "gelu": activation = .gelu
                default: throw ValidationError("mlp activation '\(kv[1])' (use silu, tanh, relu, gelu)")
                }
            default: throw ValidationError("unknown mlp option '\(kv[0])' (dim, width, depth, seed, activation)")
            }
        }
        return try VelocityMLP(dimension: dim, hiddenWidths: Array(repeating: width, count: depth),
                               activation: activation, seed: seed).makeModel()
    }

    private static func int(_ kv: [String]) throws -> Int {
        guard let v = Int(kv[1]), v >= 0 else { throw ValidationError("mlp option \(kv[0]) = '\(kv[1])' is not a non-negative integer") }
        return v
    }
}

/// Solver choices shared by the flow commands.
struct SolverArguments: ParsableArguments {
    @Option(help: "Integrator: dopri5 (adaptive unless --steps), rk4, heun, midpoint, euler.")
    var method = "dopri5"
    @Option(parsing: .unconditional, help: "Fixed number of steps, ≥ 1 (required for rk4/heun/midpoint/euler).",
            transform: Checked.integer(atLeast: 1))
    var steps: Int?
    @Option(help: "Relative tolerance (adaptive).") var rtol = 1e-5
    @Option(help: "Absolute tolerance (adaptive).") var atol = 1e-5
    @Option(parsing: .unconditional, help: "Attempted steps per sample before giving up (≥ 1).",
            transform: Checked.integer(atLeast: 1)) var maxSteps = 10_000
    @Option(help: "Largest step of adaptive runs (e.g. 0.25; default unbounded).") var maxStep: Double?
    @Option(parsing: .unconditional, help: "Worker threads, ≥ 1 (default: all processors).",
            transform: Checked.integer(atLeast: 1)) var threads: Int?
    @Flag(help: "No progress line on stderr.") var quiet = false

    func options() throws -> SolverOptions {
        guard let tableau = ButcherTableau.named(method) else {
            throw ValidationError("unknown --method '\(method)'; choose one of \(ButcherTableau.builtIn.map(\.name).joined(separator: ", "))")
        }
        var o: SolverOptions
        if let steps { o = .fixed(tableau, steps: steps) } else {
            guard tableau.isAdaptive else { throw ValidationError("--method \(method) needs --steps N (it has no error estimate)") }
            var c = StepSizeController(relativeTolerance: rtol, absoluteTolerance: atol)
            if let maxStep { c.maxStep = maxStep }
            o = SolverOptions(tableau: tableau, control: .adaptive(c))
        }
        o.maxSteps = maxSteps
        if let threads { o.threads = threads }
        try o.validate()
        return o
    }

    /// A progress line on stderr for runs longer than a second (a terminal
    /// gets a `\r`-updated line, a pipe nothing).
    func progress() -> SolverProgress? {
        if quiet || isatty(STDERR_FILENO) == 0 { return nil }
        let start = Date()
        var last = 0.0
        return { done, total, fraction in
            let now = Date().timeIntervalSince(start)
            if now > 1, now - last > 0.2 || done == total {
                last = now
                FileHandle.standardError.write(String(format: "\r\u{1B}[K%d/%d samples finished, %.0f%% of the interval, %.1f s",
                                                      done, total, 100 * fraction, now).data(using: .utf8)!)
                if done == total { FileHandle.standardError.write("\n".data(using: .utf8)!) }
            }
            return true
        }
    }

    /// One summary line on stderr.
    /// `precision`: the one the network ran in, shown when given.
    func report(_ s: SolverStatistics, seconds: Double, precision: Precision? = nil) {
        if quiet { return }
        let n = Double(max(1, s.samples))
        var line = String(format: "%d samples: %.1f steps, %.1f rejections, %.1f evaluations per sample; %.3f s",
                          s.samples, Double(s.steps) / n, Double(s.rejections) / n, Double(s.evaluations) / n, seconds)
        if let precision { line += "; \(precision)" }
        if !s.isComplete { line += "\nwarning: " + s.incompleteDescription }
        FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
    }
}

/// Reading and writing the arrays of the flow commands by file extension.
enum ArrayFile {
    /// Points `[n, d]` from .npy (float32/float64) or .csv (`header`: its
    /// first row is a header), read whole.
    static func readPoints(_ path: String, dimension d: Int, header: Bool = false) throws -> Tensor {
        try Checked.loading(path) {
            let a = path.hasSuffix(".npy") ? try NPY.read(path: path) : try CSV.read(path: path, header: header)
            return try a.points(dimension: d)
        }
    }

    /// Writes to .npy (float32 for points, float64 for log-densities) or .csv.
    static func write(_ a: NumericArray, to path: String, float32: Bool, header: [String]? = nil) throws {
        if path.hasSuffix(".npy") { try NPY.write(a, as: float32 ? .float32 : .float64, to: path) }
        else if path.hasSuffix(".csv") { try CSV.write(a, header: header, float32: float32, to: path) }
        else { throw ValidationError("'\(path)': output must end in .npy or .csv") }
    }
}

/// Input points read by rows: a C-order .npy file block by block (bounded
/// memory), anything else (CSV, Fortran-order .npy) whole.
struct PointRows {
    let count: Int
    let rows: (Range<Int>) throws -> Tensor

    init(path: String, dimension d: Int, header: Bool) throws {
        if path.hasSuffix(".npy"), let reader = try? NPY.Reader(path: path) {
            guard (reader.header.shape.count == 2 && reader.columns == d) || (reader.header.shape.count == 1 && d == 1) else {
                throw FlowError.shapeMismatch("'\(path)': data has shape \(reader.header.shape); expected [n, \(d)]")
            }
            count = reader.rows
            rows = { range in
                let values = try reader.read(rows: range)
                var points = [Float](repeating: 0, count: values.count)
                for (i, v) in values.enumerated() {
                    let f = Float(v)
                    guard f.isFinite else {
                        throw FlowError.nonFinite("'\(path)': row \(range.lowerBound + i / d), column \(i % d) is \(v) (not a finite float32)")
                    }
                    points[i] = f
                }
                return Tensor(shape: [range.count, d], scalars: points)
            }
        } else {
            // Whole-file read: also reports why the streaming reader refused.
            let x = try ArrayFile.readPoints(path, dimension: d, header: header)
            count = x.shape[0]
            rows = { x.rows($0) }
        }
    }
}
