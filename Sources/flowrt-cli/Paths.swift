import ArgumentParser
import FlowRuntime
import Foundation

/// `flowrt paths`: the "beyond the ODE" comparison of bench/paths — the same
/// velocity network trained with the trig, linear and path-length-optimised
/// Fourier schedules, and with the linear schedule plus mini-batch OT
/// coupling; for each: the flow's kinetic energy, the ODE's NFE at rtol
/// 1e-5 and the held-out negative log-likelihood (vs the true entropy).
struct Paths: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare interpolant schedules and couplings: kinetic energy, NFE at rtol 1e-5, held-out NLL.")

    @Option(help: "Dataset with a known density: checkerboard, 8gaussians, rings.") var toy = "checkerboard"
    @Option(help: "Network updates per variant.") var steps = 4000
    @Option(help: "Samples per update.") var batch = 512
    @Option(help: "Hidden units per layer (3 layers).") var width = 128
    @Option(help: "Fourier terms K of the optimised schedule.") var terms = 4
    @Option(help: "Samples for the kinetic energy, NFE and NLL.") var evalCount = 2000
    @Option(help: "Variants, comma separated: trig, linear, fourier, linear-ot.") var variants = "trig,linear,fourier,linear-ot"
    @Option(help: "Adam step of the Fourier coefficients.") var pathLr = 0.001
    @Option(help: "Network updates per schedule update.") var pathInner = 8
    @Option(help: "Worker threads (0 = all processors).") var threads = 0
    @Option(help: "Random seed.") var seed: UInt64 = 0

    func run() throws {
        guard let dataset = ToyDataset(rawValue: toy), let density = dataset.density, let entropy = dataset.entropy else {
            throw ValidationError("--toy must be a dataset with a known density")
        }
        let nThreads = threads > 0 ? threads : Parallel.defaultThreads
        let base = StandardNormal(dimension: 2)
        let heldOut = density.samples(count: evalCount, seed: seed &+ 999)
        print("| dataset | variant | kinetic energy (flow) | NFE (dopri5, rtol 1e-5) | held-out NLL | NLL − H | train s |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for variant in variants.split(separator: ",").map(String.init) {
            let start = Date()
            let graph = try VelocityMLP(dimension: 2, hiddenWidths: [width, width, width], seed: seed).makeGraph()
            var config = TrainerConfiguration(
                batchSize: batch,
                learningRate: LearningRateSchedule(learningRate: 2e-3, warmupSteps: 100,
                                                   decay: .cosine(totalSteps: steps, minimumFactor: 0.05)),
                emaDecay: 0.999, seed: seed, threads: nThreads)
            // OT pairs inside chunks of 128 (the Hungarian step is O(n³) per chunk).
            if variant == "linear-ot" { config.chunkSize = 128 }
            let data = TrainingData.source(dataset.source, heldOut: 0)
            var label = variant
            let model: Model
            switch variant {
            case "trig", "linear", "linear-ot":
                let schedule: any Schedule = variant == "trig" ? TrigSchedule() : LinearSchedule()
                let trainer = try Trainer(graph: graph, data: data, loss: InterpolantLoss(schedule: schedule), configuration: config)
                if variant == "linear-ot" { trainer.coupling = .exact }
                try trainer.fit(steps: steps)
                model = try trainer.model()
            case "fourier":
                // Alternate for 60% of the updates, then train the network
                // alone on the final schedule.
                let optimizer = try PathLengthOptimizer(
                    graph: graph, data: data, schedule: FourierSchedule(terms: terms), trainerConfiguration: config,
                    configuration: PathLengthConfiguration(learningRate: pathLr, warmupSteps: steps / 5, networkStepsPerUpdate: pathInner, batchSize: 2048))
                var reports = 0
                while optimizer.trainer.stepCount < steps * 3 / 5 {
                    let r = try optimizer.step()
                    if let e = r.kineticEnergy, reports % 50 == 0 {
                        FileHandle.standardError.write("step \(r.networkSteps): kinetic energy estimate \(e), schedule a=\(r.schedule.alphaCoefficients) b=\(r.schedule.betaCoefficients)\n".data(using: .utf8)!)
                    }
                    reports += 1
                }
                try optimizer.trainer.fit(steps: steps - optimizer.trainer.stepCount)
                model = try optimizer.trainer.model()
                let s = optimizer.schedule
                label = "fourier K=\(terms) (a=\(s.alphaCoefficients.map { String(format: "%.2f", $0) }.joined(separator: " ")); b=\(s.betaCoefficients.map { String(format: "%.2f", $0) }.joined(separator: " ")))"
            default:
                throw ValidationError("unknown variant \(variant)")
            }
            let trainSeconds = Date().timeIntervalSince(start)
            let energy = try PathLength.flowKineticEnergy(field: model, base: base, count: evalCount, seed: seed &+ 1)
            let flow = try Flow(field: model)
            let sampled = try flow.sample(count: evalCount, seed: seed &+ 2, solver: .dopri5(rtol: 1e-5, atol: 1e-5))
            let nfe = Double(sampled.statistics.evaluations) / Double(evalCount)
            let nll = try flow.logDensity(points: heldOut, solver: .dopri5(rtol: 1e-5, atol: 1e-5))
            let meanNLL = -nll.logDensities.reduce(0, +) / Double(evalCount)
            print(String(format: "| %@ | %@ | %.3f ± %.3f | %.1f | %.3f | %.3f | %.0f |", toy, label, energy.mean,
                         energy.standardError, nfe, meanNLL, meanNLL - entropy, trainSeconds))
            fflush(stdout)
        }
    }
}
