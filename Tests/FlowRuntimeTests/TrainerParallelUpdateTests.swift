import XCTest
@testable import FlowRuntime

/// The parallel, blocked optimiser update (`TrainerState`): same bits for
/// any thread count, and the same bits as a plain serial update written
/// here from the documented formulas (sum chunks in order from 0; norm as
/// Float partials of 256 squares added in Double in parameter order; clip;
/// Adam/AdamW; EMA).
final class TrainerParallelUpdateTests: XCTestCase {
    /// Layers of 100×96 = 9,600 weights: two update blocks each, the second
    /// short, and norm groups that end mid-block.
    func graph() throws -> Graph {
        try VelocityMLP(dimension: 3, hiddenWidths: [96, 100], activation: .silu, seed: 11).makeGraph()
    }

    func configuration(threads: Int, clip: Double? = 0.05, kind: OptimizerConfiguration.Kind = .adamW) -> TrainerConfiguration {
        TrainerConfiguration(batchSize: 150,
                             learningRate: LearningRateSchedule(learningRate: 2e-3, warmupSteps: 1),
                             optimizer: OptimizerConfiguration(kind: kind, weightDecay: 0.02),
                             gradientClip: clip, emaDecay: 0.95, heldOutFraction: 0, seed: 9, threads: threads,
                             chunkSize: 40)
    }

    let data = (0..<900).map { Float(($0 * 37) % 101) / 50 - 1 }

    func testBlocksCoverEveryParameterOnceAndDependOnlyOnSizes() throws {
        let t = try Trainer(graph: graph(), data: .samples(data), configuration: configuration(threads: 3))
        let s = t.state
        XCTAssertGreaterThan(s.blocks.count, t.trainable.count, "some parameter spans several blocks")
        var covered = s.counts.map { [Bool](repeating: false, count: $0) }
        var group = 0
        for b in s.blocks {
            XCTAssertEqual(b.range.lowerBound % TrainerState.blockSize, 0)
            XCTAssertLessThanOrEqual(b.range.count, TrainerState.blockSize)
            XCTAssertEqual(b.firstGroup, group)
            group += (b.range.count + TrainerState.groupSize - 1) / TrainerState.groupSize
            for j in b.range { XCTAssertFalse(covered[b.parameter][j]); covered[b.parameter][j] = true }
        }
        XCTAssertEqual(group, s.groupCount)
        XCTAssertTrue(covered.allSatisfy { $0.allSatisfy { $0 } })
        let other = try Trainer(graph: graph(), data: .samples(data), configuration: configuration(threads: 1))
        XCTAssertEqual(other.state.blocks.map(\.range), s.blocks.map(\.range))
    }

    func testWeightsAndStateAreTheSameForAnyThreadCount() throws {
        for kind in [OptimizerConfiguration.Kind.adam, .adamW] {
            var results: [[[Float]]] = []
            for threads in [1, 2, 3, 8] {
                let t = try Trainer(graph: graph(), data: .samples(data), configuration: configuration(threads: threads, kind: kind))
                try t.fit(steps: 3)
                results.append(t.rawParameters.map(\.tensor.scalars) + t.firstMoment + t.secondMoment + t.ema + t.gradient)
            }
            for r in results.dropFirst() { XCTAssertEqual(r, results[0], "\(kind)") }
        }
    }

    /// One step of the trainer against the serial reference from the same
    /// gradient: bitwise equal (weights, moments, EMA), clipped and not.
    func testStepEqualsTheSerialReference() throws {
        for clip in [0.05, nil] as [Double?] {
            let t = try Trainer(graph: graph(), data: .samples(data), configuration: configuration(threads: 2, clip: clip))
            try t.fit(steps: 2)  // nonzero moments and an EMA that moved
            var w = t.trainable.map { t.rawParameters[$0].tensor.scalars }
            var m = t.firstMoment, v = t.secondMoment, e = t.ema
            let step = t.stepCount

            // The reference: the chunk gradients summed in chunk order from 0.
            _ = try t.computeGradient(step: step)
            var g = t.gradient
            let chunks = (t.configuration.batchSize + 39) / 40
            for (a, p) in t.trainable.enumerated() {
                var sum = [Float](repeating: 0, count: g[a].count)
                for c in 0..<chunks {
                    t.differentiator.withGradient(p, workspace: t.chunks[c].workspace) { src in
                        for j in sum.indices { sum[j] += src[j] }
                    }
                }
                XCTAssertEqual(sum, g[a], "chunk sum of parameter \(p)")
            }
            var norm2 = 0.0
            for ga in g {
                var j = 0
                while j < ga.count {
                    var s: Float = 0
                    for k in j..<min(ga.count, j + 256) { s += ga[k] * ga[k] }
                    norm2 += Double(s)
                    j += 256
                }
            }
            if let clip, norm2.squareRoot() > clip {
                let s = Float(clip / norm2.squareRoot())
                for a in g.indices { for j in g[a].indices { g[a][j] *= s } }
            } else if clip != nil {
                XCTFail("the clip should bind in this test")
            }
            let lr = t.configuration.learningRate.rate(at: step)
            let decay = Float(min(t.configuration.emaDecay, Double(1 + step) / Double(10 + step)))
            for a in w.indices {
                t.configuration.optimizer.update(parameters: &w[a], gradients: g[a], firstMoment: &m[a], secondMoment: &v[a],
                                                 count: w[a].count, learningRate: lr, k: step + 1)
                for j in e[a].indices { e[a][j] = decay * e[a][j] + (1 - decay) * w[a][j] }
            }

            try t.step()
            XCTAssertEqual(t.trainable.map { t.rawParameters[$0].tensor.scalars }, w, "weights, clip \(String(describing: clip))")
            XCTAssertEqual(t.firstMoment, m)
            XCTAssertEqual(t.secondMoment, v)
            XCTAssertEqual(t.ema, e)
            XCTAssertEqual(t.gradient, g, "the clipped gradient")
        }
    }

    /// The packed weights the forward pass reads are rebuilt after the
    /// parallel update: the trainer's next loss equals a fresh trainer's
    /// loss at the same weights.
    func testForwardSeesTheUpdatedWeights() throws {
        let t = try Trainer(graph: graph(), data: .samples(data), configuration: configuration(threads: 2))
        try t.fit(steps: 2)
        var g = try graph()
        g.parameters = t.rawParameters
        let fresh = try Trainer(graph: g, data: .samples(data), configuration: configuration(threads: 1))
        XCTAssertEqual(try t.computeGradient(step: 7), try fresh.computeGradient(step: 7))
    }
}
