import Foundation
import XCTest
@testable import FlowRuntime

/// Host-supplied schedules (`CallbackSchedule`) that fail at run time, the
/// way the C ABI's wrapper reports a failed callback (all four coefficients
/// NaN), and flows with such a schedule saved to ONNX and loaded back.
final class CallbackScheduleTests: XCTestCase {
    /// Set from the test thread between calls; read by trainer worker threads.
    final class Switch: @unchecked Sendable { var failing = false }

    /// The linear schedule, or NaN while `s.failing`.
    func hostLinear(_ s: Switch) -> CallbackSchedule {
        CallbackSchedule { t in
            s.failing ? InterpolantCoefficients(alpha: .nan, beta: .nan, alphaDot: .nan, betaDot: .nan)
                      : LinearSchedule().coefficients(at: t)
        }
    }

    func config() -> TrainerConfiguration {
        TrainerConfiguration(batchSize: 96, learningRate: LearningRateSchedule(learningRate: 3e-3),
                             emaDecay: 0.9, heldOutFraction: 0.2, seed: 5, threads: 2, chunkSize: 32)
    }

    let data = Checkerboard().samples(count: 300, seed: 2).scalars

    func graph() throws -> Graph { try VelocityMLP(dimension: 2, hiddenWidths: [16, 16], seed: 4).makeGraph() }

    func assertNonFiniteSchedule(_ error: Error, _ file: StaticString = #filePath, _ line: UInt = #line) {
        guard case FlowError.nonFinite(let m) = error else { return XCTFail("\(error)", file: file, line: line) }
        XCTAssertTrue(m.contains("schedule 'custom' is not finite at t = "), m, file: file, line: line)
        XCTAssertTrue(m.contains("host callback"), m, file: file, line: line)
    }

    func testFiniteCoefficientsNameTheScheduleAndTime() throws {
        let s = Switch()
        XCTAssertEqual(try hostLinear(s).finiteCoefficients(at: 0.25), LinearSchedule().coefficients(at: 0.25))
        s.failing = true
        XCTAssertThrowsError(try hostLinear(s).finiteCoefficients(at: 0.25)) { e in
            assertNonFiniteSchedule(e)
            XCTAssertTrue("\(e)".contains("t = 0.25 (α = nan"), "\(e)")
        }
        XCTAssertThrowsError(try hostLinear(s).validate())
        // A built-in schedule is not blamed on a host callback (α' = 1e308 · π cos(π/4) = ∞).
        let wild = try FourierSchedule(alphaCoefficients: [1e308], betaCoefficients: [1e308])
        XCTAssertThrowsError(try wild.finiteCoefficients(at: 0.25)) { e in
            guard case FlowError.nonFinite(let m) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("schedule 'fourier'") && !m.contains("host"), m)
        }
    }

    /// A failing schedule stops the step before the update: the trainer is
    /// left exactly as before, and after recovery it continues bit-identically
    /// to a trainer that never saw the failure.
    func testFailingScheduleStopsTheStepAndChangesNothing() throws {
        let s = Switch()
        let a = try Trainer(graph: graph(), data: .samples(data), loss: InterpolantLoss(schedule: hostLinear(s)),
                            configuration: config())
        try a.step()
        s.failing = true
        XCTAssertThrowsError(try a.step()) { assertNonFiniteSchedule($0) }
        XCTAssertThrowsError(try a.fit(steps: 3)) { assertNonFiniteSchedule($0) }
        XCTAssertEqual(a.stepCount, 1)
        s.failing = false
        try a.fit(steps: 2)

        let b = try Trainer(graph: graph(), data: .samples(data), loss: InterpolantLoss(schedule: hostLinear(Switch())),
                            configuration: config())
        try b.fit(steps: 3)
        XCTAssertEqual(a.rawParameters, b.rawParameters)
        XCTAssertEqual(a.evaluationParameters, b.evaluationParameters)
        XCTAssertEqual(a.lastLoss, b.lastLoss)

        // The held-out set is interpolated at creation: a failure there throws too.
        s.failing = true
        XCTAssertThrowsError(try Trainer(graph: graph(), data: .samples(data), loss: InterpolantLoss(schedule: hostLinear(s)),
                                         configuration: config())) { assertNonFiniteSchedule($0) }
    }

    /// The score and the SDE sampler report a failing schedule as such (not
    /// as a "singular" time, not as NaN samples).
    func testScoreAndSDEReportAFailingSchedule() throws {
        let s = Switch()
        let flow = try Flow(field: try VelocityMLP(dimension: 2, hiddenWidths: [8], seed: 1).makeModel(), schedule: hostLinear(s))
        let x = Tensor(shape: [2, 2], scalars: [0.1, 0.2, -0.3, 0.4])
        XCTAssertNoThrow(try flow.score(times: [0.3, 0.6], points: x))
        XCTAssertNoThrow(try flow.sampleSDE(count: 4, seed: 1, options: SDEOptions(steps: 10)))
        s.failing = true
        XCTAssertThrowsError(try flow.score(times: [0.3, 0.6], points: x)) { assertNonFiniteSchedule($0) }
        XCTAssertThrowsError(try flow.sampleSDE(count: 4, seed: 1, options: SDEOptions(steps: 10))) { assertNonFiniteSchedule($0) }
    }

    /// A saved custom flow records "custom"; loaded, it has no schedule: it
    /// samples like the original (velocity within the ONNX round trip's
    /// 1e-5), refuses the score with `.unsupported`, and saves "custom" again.
    func testSavedCustomFlowLoadsWithoutItsSchedule() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowrt-custom-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("custom.onnx").path
        let model = try VelocityMLP(dimension: 2, hiddenWidths: [16], seed: 9).makeModel()
        let original = try Flow(field: model, schedule: hostLinear(Switch()))
        try original.saveONNX(path: path)

        let loadedModel = try Model.loadONNX(path: path)
        XCTAssertEqual(loadedModel.metadata[Flow.MetadataKey.interpolant], "custom")
        let loaded = try Flow(model: loadedModel)
        XCTAssertNil(loaded.schedule)
        XCTAssertEqual(loaded.interpolantName, "custom")
        let o = SolverOptions.fixed(.rk4, steps: 20)
        let a = try original.sample(count: 16, seed: 3, solver: o).points
        let b = try loaded.sample(count: 16, seed: 3, solver: o).points
        XCTAssertLessThan(a.maxAbsDifference(b), 1e-4)
        XCTAssertThrowsError(try loaded.score(times: [0.5], points: Tensor(shape: [1, 2], scalars: [0, 0]))) { e in
            guard case FlowError.unsupported(let m) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("custom"), m)
        }
        XCTAssertEqual(try loaded.modelForExport().metadata[Flow.MetadataKey.interpolant], "custom")
        // Other unknown names are still refused.
        XCTAssertThrowsError(try Flow(model: loadedModel.withMetadata(["flowrt.interpolant": "wiggly"]))) { e in
            guard case FlowError.invalidModel = e else { return XCTFail("\(e)") }
        }
    }
}
