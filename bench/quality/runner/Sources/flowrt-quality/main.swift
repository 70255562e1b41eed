// flowrt-quality: one FlowRuntime run of bench/quality.
//
// Trains a VelocityMLP with the interpolant's quadratic loss (FlowRuntime's
// Trainer), then measures, in this process: held-out log-likelihood with
// exact and Hutchinson divergence, sampling, and their solver statistics.
// Writes a JSON summary plus the per-point log-densities and the samples as
// .npy for run.py, which owns the tables and plots.
//
//   flowrt-quality --train train.npy --test test.npy --schedule trig \
//     --width 128 --depth 3 --steps 2000 --batch 512 --lr 2e-3 --seed 0 \
//     --threads 1 --out result.json [--curve 0.25,0.5] [--toy checkerboard]
//
// Training time excludes the intermediate NLL evaluations of --curve.

import FlowRuntime
import Foundation

struct Arguments {
    var values: [String: String] = [:]
    init(_ argv: [String]) throws {
        var i = 0
        while i < argv.count {
            let key = argv[i]
            guard key.hasPrefix("--"), i + 1 < argv.count else { throw Failure("expected --key value at '\(key)'") }
            values[String(key.dropFirst(2))] = argv[i + 1]
            i += 2
        }
    }
    func string(_ k: String, _ fallback: String? = nil) throws -> String {
        guard let v = values[k] ?? fallback else { throw Failure("missing --\(k)") }
        return v
    }
    func int(_ k: String, _ fallback: Int) throws -> Int {
        guard let s = values[k] else { return fallback }
        guard let v = Int(s) else { throw Failure("--\(k) '\(s)' is not an integer") }
        return v
    }
    func double(_ k: String, _ fallback: Double) throws -> Double {
        guard let s = values[k] else { return fallback }
        guard let v = Double(s) else { throw Failure("--\(k) '\(s)' is not a number") }
        return v
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Wall-clock seconds.
func now() -> Double { clock(CLOCK_MONOTONIC) }
/// CPU seconds of this process (all threads): the timing the report uses,
/// because the machine is shared; equal to wall-clock on an idle core.
func cpu() -> Double { clock(CLOCK_PROCESS_CPUTIME_ID) }

func clock(_ id: clockid_t) -> Double {
    var ts = timespec()
    clock_gettime(id, &ts)
    return Double(ts.tv_sec) + 1e-9 * Double(ts.tv_nsec)
}

/// Rows of a 2-D .npy as a tensor [n, d].
func readPoints(_ path: String) throws -> Tensor {
    let a = try NPY.read(path: path)
    guard a.shape.count == 2 else { throw Failure("'\(path)' is not 2-D: \(a.shape)") }
    return try a.points(dimension: a.shape[1])
}

/// The first `n` rows of `x`.
func prefix(_ x: Tensor, rows n: Int) -> Tensor {
    let d = x.shape[1], m = min(n, x.shape[0])
    return Tensor(shape: [m, d], scalars: Array(x.scalars[0..<(m * d)]))
}

/// Mean −log ρ, and the solver summary of one likelihood pass.
struct LikelihoodRun {
    var nll: Double
    var seconds: Double
    var wallSeconds: Double
    var nfe: Double
    var incomplete: Int
    var meanStandardError: Double?
    var logDensities: [Double]

    init(flow: Flow, points: Tensor, method: DivergenceMethod, solver: SolverOptions) throws {
        let start = cpu(), wall = now()
        let r = try flow.logDensity(points: points, method: method, solver: solver)
        seconds = cpu() - start
        wallSeconds = now() - wall
        logDensities = r.logDensities
        let n = Double(r.logDensities.count)
        nll = -r.logDensities.reduce(0, +) / n
        nfe = Double(r.statistics.evaluations) / Double(max(1, r.statistics.samples))
        incomplete = r.samples.filter { $0.status != .ok }.count
        meanStandardError = r.standardErrors.map { $0.reduce(0, +) / n }
    }

    var json: [String: Any] {
        var j: [String: Any] = ["nll": nll, "seconds": seconds, "wall_seconds": wallSeconds, "nfe": nfe, "incomplete": incomplete,
                                "points": logDensities.count]
        if let se = meanStandardError { j["mean_standard_error"] = se }
        return j
    }
}

/// JSON has no NaN or infinity: such numbers become null.
func finite(_ v: Any) -> Any {
    switch v {
    case let d as Double: return d.isFinite ? d : NSNull()
    case let a as [Any]: return a.map(finite)
    case let m as [String: Any]: return m.mapValues(finite)
    default: return v
    }
}

func run() throws {
    let args = try Arguments(Array(CommandLine.arguments.dropFirst()))
    let train = try readPoints(try args.string("train"))
    let test = try readPoints(try args.string("test"))
    let d = train.shape[1]
    guard test.shape[1] == d else { throw Failure("train and test dimensions differ") }

    let steps = try args.int("steps", 2000), threads = try args.int("threads", 1)
    let seed = UInt64(try args.int("seed", 0))
    let width = try args.int("width", 128), depth = try args.int("depth", 3)
    let scheduleName = try args.string("schedule", "trig")
    let schedule: any Schedule
    switch scheduleName {
    case "trig": schedule = TrigSchedule()
    case "linear": schedule = LinearSchedule()
    default: throw Failure("--schedule must be trig or linear")
    }
    let config = TrainerConfiguration(
        batchSize: try args.int("batch", 512),
        learningRate: LearningRateSchedule(learningRate: try args.double("lr", 2e-3), warmupSteps: try args.int("warmup", 100),
                                           decay: .cosine(totalSteps: steps, minimumFactor: 0.01)),
        gradientClip: 1.0, emaDecay: try args.double("ema", 0.999), heldOutFraction: 0,
        seed: seed, threads: threads, evaluationInterval: Int.max)
    let graph = try VelocityMLP(dimension: d, hiddenWidths: Array(repeating: width, count: depth), seed: seed).makeGraph()
    let trainer = try Trainer(graph: graph, data: .samples(train.scalars), loss: InterpolantLoss(schedule: schedule),
                              configuration: config)

    var solver = SolverOptions.dopri5(rtol: try args.double("rtol", 1e-5), atol: try args.double("atol", 1e-5))
    solver.threads = threads

    // Training in segments; the NLL curve is measured between them and not timed.
    let fractions = (args.values["curve"] ?? "").split(separator: ",").compactMap { Double($0) }.filter { $0 > 0 && $0 < 1 }
    let curvePoints = prefix(test, rows: try args.int("curve-points", 1000))
    var curve: [[String: Any]] = []
    var trainSeconds = 0.0, trainWall = 0.0
    for f in fractions.sorted() + [1.0] {
        let target = Int((Double(steps) * f).rounded())
        let start = cpu(), wall = now()
        try trainer.fit(steps: max(0, target - trainer.stepCount))
        trainSeconds += cpu() - start
        trainWall += now() - wall
        let flow = try Flow(field: try trainer.model(), schedule: schedule)
        let lr = try LikelihoodRun(flow: flow, points: curvePoints, method: .exact, solver: solver)
        curve.append(["step": trainer.stepCount, "train_seconds": trainSeconds, "nll": lr.nll, "points": curvePoints.shape[0]])
        FileHandle.standardError.write("step \(trainer.stepCount): \(String(format: "%.1f", trainSeconds)) s, curve NLL \(lr.nll)\n".data(using: .utf8)!)
    }

    let flow = try Flow(field: try trainer.model(), schedule: schedule)
    let exact = try LikelihoodRun(flow: flow, points: test, method: .exact, solver: solver)
    let hutch = try LikelihoodRun(flow: flow, points: test, method: .hutchinson(probes: 1, kind: .rademacher, seed: seed),
                                  solver: solver)
    let sampleCount = try args.int("samples", 10_000)
    let sampleStart = cpu(), sampleWall = now()
    let samples = try flow.sample(count: sampleCount, seed: seed &+ 1000, solver: solver)
    let sampleSeconds = cpu() - sampleStart, sampleWallSeconds = now() - sampleWall
    let sampleNFE = Double(samples.statistics.evaluations) / Double(max(1, samples.statistics.samples))

    var result: [String: Any] = [
        "system": "flowrt-\(scheduleName)", "dimension": d, "seed": Int(seed), "threads": threads,
        "train_points": train.shape[0], "steps": trainer.stepCount, "train_seconds": trainSeconds,
        "train_wall_seconds": trainWall, "final_loss": trainer.lastLoss?.regression ?? .nan,
        "parameters": trainer.rawParameters.reduce(0) { $0 + $1.tensor.count },
        "exact": exact.json, "hutchinson": hutch.json, "curve": curve,
        "sample": ["seconds": sampleSeconds, "wall_seconds": sampleWallSeconds, "nfe": sampleNFE, "count": sampleCount],
    ]
    if let name = args.values["toy"] {
        // The numpy generator must match FlowRuntime's closed-form density.
        guard let toy = ToyDataset(rawValue: name), let density = toy.density else { throw Failure("--toy \(name) has no density") }
        var mine = [Double](repeating: 0, count: test.shape[0])
        test.scalars.withUnsafeBufferPointer { x in mine.withUnsafeMutableBufferPointer { density.logDensity(points: x, into: $0) } }
        let theirs = try NPY.read(path: try args.string("true-logp")).values
        var worst = 0.0
        for i in mine.indices where mine[i].isFinite || theirs[i].isFinite { worst = max(worst, abs(mine[i] - theirs[i])) }
        result["toy_check"] = ["max_abs_logp_difference": worst, "entropy": toy.entropy ?? .nan]
    }
    if let p = args.values["logp-out"] {
        try NPY.write(NumericArray(shape: [exact.logDensities.count], values: exact.logDensities), as: .float64, to: p)
    }
    if let p = args.values["samples-out"] { try NPY.write(NumericArray(samples.points), as: .float32, to: p) }
    let data = try JSONSerialization.data(withJSONObject: finite(result), options: [.prettyPrinted, .sortedKeys])
    try data.write(to: URL(fileURLWithPath: try args.string("out")))
}

do { try run() } catch {
    FileHandle.standardError.write("flowrt-quality: \(error)\n".data(using: .utf8)!)
    exit(1)
}
