import XCTest
@testable import FlowRuntime

final class TrainerTests: XCTestCase {
    func smallGraph(dimension: Int = 2, residual: Bool = false, seed: UInt64 = 1) throws -> Graph {
        try VelocityMLP(dimension: dimension, hiddenWidths: [16, 16], residual: residual, seed: seed).makeGraph()
    }

    func config(threads: Int = 2) -> TrainerConfiguration {
        TrainerConfiguration(batchSize: 200,
                             learningRate: LearningRateSchedule(learningRate: 3e-3, warmupSteps: 2,
                                                                decay: .cosine(totalSteps: 10, minimumFactor: 0.1)),
                             optimizer: OptimizerConfiguration(kind: .adamW, weightDecay: 0.01),
                             gradientClip: 0.5, emaDecay: 0.9, heldOutFraction: 0.25, seed: 42, threads: threads,
                             chunkSize: 48, evaluationInterval: 2)
    }

    let data = Checkerboard().samples(count: 400, seed: 7).scalars

    /// 5 chunks (one short) on 1, 2 and 8 threads: bit-identical weights.
    func testThreadCountDoesNotChangeWeights() throws {
        var results: [[Graph.Parameter]] = []
        for threads in [1, 2, 8] {
            let t = try Trainer(graph: try smallGraph(residual: true), data: .samples(data), configuration: config(threads: threads))
            try t.fit(steps: 4)
            results.append(t.rawParameters + t.evaluationParameters)
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
        XCTAssertNotEqual(results[0], try smallGraph(residual: true).parameters + smallGraph(residual: true).parameters)
    }

    func testResumeFromCheckpointIsBitIdentical() throws {
        let path = NSTemporaryDirectory() + "flowrt-trainer-\(getpid()).ckpt"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let straight = try Trainer(graph: try smallGraph(), data: .samples(data), configuration: config())
        try straight.fit(steps: 6)

        let first = try Trainer(graph: try smallGraph(), data: .samples(data), configuration: config())
        try first.fit(steps: 3)
        try first.saveCheckpoint(to: path)
        let resumed = try Trainer(graph: try smallGraph(), data: .samples(data), configuration: config())
        try resumed.loadCheckpoint(from: path)
        XCTAssertEqual(resumed.stepCount, 3)
        XCTAssertEqual(resumed.lastLoss, first.lastLoss)
        try resumed.fit(steps: 3)
        XCTAssertEqual(resumed.rawParameters, straight.rawParameters)
        XCTAssertEqual(resumed.evaluationParameters, straight.evaluationParameters)
        XCTAssertEqual(resumed.lastLoss, straight.lastLoss)
        XCTAssertEqual(resumed.lastHeldOutLoss, straight.lastHeldOutLoss)
    }

    func testBadCheckpointsAreRejectedAndChangeNothing() throws {
        let path = NSTemporaryDirectory() + "flowrt-bad-\(getpid()).ckpt"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let t = try Trainer(graph: try smallGraph(), data: .samples(data), configuration: config())
        try t.fit(steps: 1)
        try t.saveCheckpoint(to: path)
        var bytes = try FileIO.read(path)
        let other = try Trainer(graph: try VelocityMLP(dimension: 2, hiddenWidths: [8]).makeGraph(), data: .samples(data))
        XCTAssertThrowsError(try other.loadCheckpoint(from: path)) {
            guard case FlowError.shapeMismatch = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(other.stepCount, 0)
        bytes[bytes.count / 2] ^= 0x40
        try FileIO.writeAtomically(bytes, to: path)
        XCTAssertThrowsError(try t.loadCheckpoint(from: path)) { XCTAssertTrue("\($0)".contains("CRC")) }
        try FileIO.writeAtomically(Array(bytes.prefix(100)), to: path)
        XCTAssertThrowsError(try t.loadCheckpoint(from: path)) {
            guard case FlowError.invalidModel = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try t.loadCheckpoint(from: path + ".missing")) {
            guard case FlowError.io = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(t.stepCount, 1)
    }

    func testProgressReportsAndCancels() throws {
        let t = try Trainer(graph: try smallGraph(), data: .samples(data), configuration: config())
        var seen: [Int] = []
        XCTAssertThrowsError(try t.fit(steps: 10) { p in
            seen.append(p.step)
            XCTAssertEqual(p.targetStep, 10)
            XCTAssertTrue(p.trainLoss.quadratic.isFinite && p.stepsPerSecond > 0)
            if p.step >= 2 { XCTAssertNotNil(p.heldOutLoss) }
            return p.step < 3
        }) { guard case FlowError.cancelled = $0 else { return XCTFail("\($0)") } }
        XCTAssertEqual(seen, [1, 2, 3])
        XCTAssertEqual(t.stepCount, 3)
    }

    func testHeldOutSplit() throws {
        let t = try Trainer(graph: try smallGraph(), data: .samples(data), configuration: config())
        XCTAssertEqual(t.heldOutCount, 100)
        XCTAssertEqual(t.trainRows.count, 300)
        XCTAssertEqual(Set(t.trainRows).count, 300)
        XCTAssertThrowsError(try Trainer(graph: try smallGraph(), data: .samples([1, 2, 3]))) {
            guard case FlowError.shapeMismatch = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try Trainer(graph: try smallGraph(), data: .samples([1, .nan]))) {
            guard case FlowError.nonFinite = $0 else { return XCTFail("\($0)") }
        }
        var bad = config(); bad.emaDecay = 1
        XCTAssertThrowsError(try Trainer(graph: try smallGraph(), data: .samples(data), configuration: bad))
        XCTAssertThrowsError(try Trainer(graph: try smallGraph(), data: .samples(data), base: StandardNormal(dimension: 3)))
    }

    func testStreamingMode() throws {
        var steps: [Int] = []
        let stream: TrainingData = .stream({ step, batch in
            steps.append(step)
            for i in 0..<(batch.count / 2) {
                var r = RandomStream(seed: 3, purpose: .custom, index: UInt64(step * 1000 + i))
                batch[2 * i] = Float(3 + r.nextNormal()); batch[2 * i + 1] = Float(r.nextNormal())
            }
        }, heldOut: [3, 0, 2, 1])
        let t = try Trainer(graph: try smallGraph(), data: stream, configuration: config())
        try t.fit(steps: 3)
        XCTAssertEqual(steps, [0, 1, 2])
        XCTAssertEqual(t.heldOutCount, 2)
        XCTAssertNotNil(t.lastHeldOutLoss)
        let before = t.rawParameters
        let broken = try Trainer(graph: try smallGraph(), data: .stream({ _, b in b[5] = .nan }, heldOut: []), configuration: config())
        XCTAssertThrowsError(try broken.step()) { guard case FlowError.nonFinite = $0 else { return XCTFail("\($0)") } }
        XCTAssertEqual(broken.stepCount, 0)
        XCTAssertEqual(t.rawParameters, before)
    }

    func testModelIsAnEMASnapshot() throws {
        let t = try Trainer(graph: try smallGraph(), data: .samples(data), configuration: config())
        try t.fit(steps: 3)
        let m = try t.model()
        XCTAssertEqual(m.graph.parameters, t.evaluationParameters)
        XCTAssertNotEqual(t.evaluationParameters, t.rawParameters)
        XCTAssertEqual(m.metadata["flowrt.interpolant"], "trig")
        try t.fit(steps: 1)
        XCTAssertNotEqual(try t.model().graph.parameters, m.graph.parameters)  // the old snapshot is unchanged
        var raw = config(); raw.emaDecay = 0
        let r = try Trainer(graph: try smallGraph(), data: .samples(data), configuration: raw)
        try r.fit(steps: 2)
        XCTAssertEqual(try r.model().graph.parameters, r.rawParameters)
    }

    /// Adam and AdamW against a direct Double implementation of
    /// torch.optim.Adam/AdamW for 3 updates (float32 state: 1e-6 relative).
    func testAdamMatchesReference() {
        for kind in [OptimizerConfiguration.Kind.adam, .adamW] {
            let opt = OptimizerConfiguration(kind: kind, beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.1)
            var p: [Float] = [0.5, -1, 2], m = [Float](repeating: 0, count: 3), v = m
            var rp = p.map(Double.init), rm = [0.0, 0, 0], rv = rm
            for k in 1...3 {
                let g: [Float] = [Float(k) * 0.3, -0.2, 1.5 / Float(k)]
                let lr = 0.01 * Double(k)
                opt.update(parameters: &p, gradients: g, firstMoment: &m, secondMoment: &v, count: 3, learningRate: lr, k: k)
                for i in 0..<3 {
                    var gi = Double(g[i])
                    if kind == .adamW { rp[i] *= 1 - lr * 0.1 } else { gi += 0.1 * rp[i] }
                    rm[i] = 0.8 * rm[i] + 0.2 * gi
                    rv[i] = 0.95 * rv[i] + 0.05 * gi * gi
                    let mh = rm[i] / (1 - pow(0.8, Double(k))), vh = rv[i] / (1 - pow(0.95, Double(k)))
                    rp[i] -= lr * mh / (vh.squareRoot() + 1e-6)
                }
            }
            for i in 0..<3 { XCTAssertEqual(Double(p[i]), rp[i], accuracy: 1e-6 * max(1, abs(rp[i])), "\(kind)") }
        }
    }

    func testLearningRateSchedules() {
        let cos = LearningRateSchedule(learningRate: 1, warmupSteps: 4, decay: .cosine(totalSteps: 14, minimumFactor: 0.1))
        XCTAssertEqual(cos.rate(at: 0), 0.25)
        XCTAssertEqual(cos.rate(at: 3), 1)
        XCTAssertEqual(cos.rate(at: 4), 1)
        XCTAssertEqual(cos.rate(at: 9), 0.55, accuracy: 1e-12)   // halfway: 0.1 + 0.9/2
        XCTAssertEqual(cos.rate(at: 14), 0.1, accuracy: 1e-12)
        XCTAssertEqual(cos.rate(at: 100), 0.1, accuracy: 1e-12)
        let step = LearningRateSchedule(learningRate: 2, warmupSteps: 0, decay: .step(every: 10, factor: 0.5))
        XCTAssertEqual([0, 9, 10, 25].map(step.rate), [2, 2, 1, 0.5])
        XCTAssertThrowsError(try LearningRateSchedule(learningRate: 0).validate())
        XCTAssertThrowsError(try LearningRateSchedule(decay: .step(every: 0, factor: 0.5)).validate())
    }

    /// N(0, 1) → N(2, 0.5²) in 1-D: after training, the held-out loss of the
    /// EMA network is within 0.08 (1.5% of |min G| = 5.24) of the loss of the
    /// exact velocity on the same held-out draws, and that in turn matches the
    /// closed-form minimum −(π²/8)(μ² + (σ − 1)²) within 4 standard errors.
    func testTrainingReachesTheGaussianMinimum() throws {
        let mu = 2.0, sigma = 0.5
        let graph = try VelocityMLP(dimension: 1, hiddenWidths: [32, 32], seed: 2).makeGraph()
        let cfg = TrainerConfiguration(
            batchSize: 256,
            learningRate: LearningRateSchedule(learningRate: 3e-3, warmupSteps: 50, decay: .cosine(totalSteps: 800, minimumFactor: 0.05)),
            emaDecay: 0.99, seed: 1, threads: 2, evaluationInterval: 800)
        let target = try DiagonalNormal(mean: [mu], standardDeviation: [sigma])
        let t = try Trainer(graph: graph, data: .source(target, heldOut: 8192), configuration: cfg)
        let initial = try t.evaluateHeldOut()!.quadratic
        try t.fit(steps: 800)
        let trained = t.lastHeldOutLoss!.quadratic
        // The exact velocity on the same held-out (t, x_t, ∂_tI).
        var exact = 0.0, exact2 = 0.0
        for j in 0..<t.heldOutCount {
            let v = LossTests.exactVelocity(t: t.heldOutTimes[j], x: Double(t.heldOutPoints[j]), mean: mu, sd: sigma)
            let g = v * v - 2 * Double(t.heldOutTargets[j]) * v
            exact += g; exact2 += g * g
        }
        let n = Double(t.heldOutCount)
        exact /= n
        let se = ((exact2 / n - exact * exact) / n).squareRoot()
        let closedForm = LossTests.minimumOfG(mean: mu, sd: sigma)
        XCTAssertEqual(exact, closedForm, accuracy: 4 * se)
        XCTAssertGreaterThan(initial - closedForm, 1)        // there was something to learn
        print("Gaussian target: trained held-out G \(trained), exact-velocity G \(exact) ± \(se), closed form \(closedForm)")
        XCTAssertEqual(trained, exact, accuracy: 0.08)
    }
}

/// Fine-tuning networks exported by PyTorch (both exporters): the imported
/// graph trains, its loss gradient matches central differences, training
/// lowers the held-out loss, and the result exports to ONNX and imports back
/// with the same velocities.
final class TrainerONNXTests: XCTestCase {
    func testFineTuningImportedNetworks() throws {
        for file in ["mlp_silu__dynamo__op17.onnx", "mlp_silu__legacy__op17.onnx"] {
            let path = ONNXFixtures.folder + "/" + file
            guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("fixture \(path) is missing") }
            let imported = try Model.loadONNX(path: path)
            let data = Checkerboard().samples(count: 2000, seed: 3).scalars
            let config = TrainerConfiguration(batchSize: 64, learningRate: LearningRateSchedule(learningRate: 1e-3),
                                              emaDecay: 0, heldOutFraction: 0.25, heldOutLimit: 256, seed: 4,
                                              threads: 2, chunkSize: 32)
            let t = try Trainer(graph: imported.graph, data: .samples(data), configuration: config)
            XCTAssertGreaterThanOrEqual(t.trainable.count, 8, file)

            // Gradient against central differences (as in LossTests), a few entries.
            _ = try t.computeGradient(step: 0)
            let analytic = t.gradient
            let scale = max(1, analytic.flatMap { $0 }.map { abs(Double($0)) }.max()!)
            for (a, p) in t.trainable.enumerated().prefix(4) {
                func loss(_ delta: Float) throws -> Double {
                    t.differentiator.withParameter(p) { $0[0] += delta }
                    defer { t.differentiator.withParameter(p) { $0[0] -= delta } }
                    return try t.computeGradient(step: 0).quadratic
                }
                let fd = (try loss(1e-2) - loss(-1e-2)) / 2e-2
                XCTAssertEqual(Double(analytic[a][0]), fd, accuracy: 2e-3 * scale, "\(file) parameter \(p)")
            }

            let before = try t.evaluateHeldOut()!.quadratic
            try t.fit(steps: 25)
            XCTAssertLessThan(t.lastHeldOutLoss!.quadratic, before - 0.5, file)

            let exported = NSTemporaryDirectory() + "flowrt-finetuned-\(getpid()).onnx"
            defer { try? FileManager.default.removeItem(atPath: exported) }
            let tuned = try t.model()
            try tuned.saveONNX(path: exported)
            let again = try Model.loadONNX(path: exported)
            let x = Checkerboard().samples(count: 8, seed: 5)
            let times = (0..<8).map { Double($0) / 7 }
            XCTAssertLessThan(again.velocity(t: times, x: x).maxAbsDifference(tuned.velocity(t: times, x: x)), 1e-5, file)
        }
    }
}

import Foundation

extension TrainerTests {
    /// The checkpoint fuzzer's findings: a CRC-valid file whose step is
    /// above Int.max, or near it (the next step's arithmetic overflowed),
    /// is refused with a message instead of trapping.
    func testCheckpointsWithAbsurdStepsAreRefused() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fuzz/corpus-checkpoint")
        let data = (0..<128).map { Float($0 % 7) / 7 }
        for name in ["regress-step-above-int-max", "regress-step-near-int-max"] {
            // The corpus files hold everything but the CRC, which the harness
            // appends (little-endian CRC-32 of the preceding bytes).
            var bytes = [UInt8](try Data(contentsOf: folder.appendingPathComponent(name)))
            let crc = Checksum.crc32(bytes[...])
            bytes += (0..<4).map { UInt8(truncatingIfNeeded: crc >> (8 * $0)) }
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("flowrt-\(name).ckpt").path
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            defer { try? FileManager.default.removeItem(atPath: path) }
            let t = try Trainer(graph: try smallGraph(), data: .samples(data), configuration: config())
            XCTAssertThrowsError(try t.loadCheckpoint(from: path), name) { e in
                guard case FlowError.invalidModel(let m) = e else { return XCTFail("\(name): \(e)") }
                XCTAssertTrue(m.contains("above 2^53"), m)
            }
        }
    }
}
