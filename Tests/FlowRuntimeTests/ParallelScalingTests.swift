import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import FlowRuntime

/// Issue 17 ("both cores"): dynamic chunk claiming, pooled per-thread
/// scratch, field-preferred chunks and unsliced SDE runs keep every result
/// bit-identical for any thread count.
final class ParallelScalingTests: XCTestCase {
    /// A network that asks solvers for chunks of `chunk` samples and is
    /// otherwise the wrapped model (its rows are computed independently).
    struct SmallChunks: VelocityField {
        let model: Model
        let chunk: Int
        var wide: Int? = nil
        var dimension: Int { model.dimension }
        var preferredChunkSize: Int { chunk }
        var batchChunkSize: Int { wide ?? chunk }
        func makeWorkspace() -> FieldWorkspace { model.makeWorkspace() }
        func velocity(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                      into velocities: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
            model.velocity(times: times, points: points, into: velocities, workspace: workspace)
        }
        func velocityJVP(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                         tangents: UnsafeBufferPointer<Float>, k: Int, into velocities: UnsafeMutableBufferPointer<Float>,
                         products: UnsafeMutableBufferPointer<Float>, workspace: FieldWorkspace) {
            model.velocityJVP(times: times, points: points, tangents: tangents, k: k, into: velocities,
                              products: products, workspace: workspace)
        }
        func velocityDivergence(times: UnsafeBufferPointer<Double>, points: UnsafeBufferPointer<Float>,
                                into velocities: UnsafeMutableBufferPointer<Float>,
                                divergences: UnsafeMutableBufferPointer<Double>, workspace: FieldWorkspace) {
            model.velocityDivergence(times: times, points: points, into: velocities, divergences: divergences,
                                     workspace: workspace)
        }
    }

    /// Every chunk is visited exactly once with its own range, whatever the
    /// thread count, including a short last chunk and more threads than chunks.
    func testForEachChunkVisitsEveryChunkOnce() {
        for (count, chunk) in [(0, 4), (1, 4), (10, 3), (1000, 64), (7, 7), (5, 100)] {
            for threads in [1, 2, 3, 8] {
                let chunks = (count + chunk - 1) / chunk
                let seen = UnsafeMutablePointer<Int>.allocate(capacity: Swift.max(chunks, 1))
                let lower = UnsafeMutablePointer<Int>.allocate(capacity: Swift.max(chunks, 1))
                let upper = UnsafeMutablePointer<Int>.allocate(capacity: Swift.max(chunks, 1))
                seen.initialize(repeating: 0, count: Swift.max(chunks, 1))
                Parallel.forEachChunk(count: count, chunkSize: chunk, threads: threads) { c, r in
                    seen[c] += 1  // each chunk is run by one thread, so no other thread writes seen[c]
                    lower[c] = r.lowerBound
                    upper[c] = r.upperBound
                }
                for c in 0..<chunks {
                    XCTAssertEqual(seen[c], 1, "count \(count), chunk \(chunk), threads \(threads), chunk \(c)")
                    XCTAssertEqual(lower[c], c * chunk)
                    XCTAssertEqual(upper[c], Swift.min(count, (c + 1) * chunk))
                }
                seen.deallocate(); lower.deallocate(); upper.deallocate()
            }
        }
    }

    /// A team runs many passes, each visiting every chunk exactly once,
    /// with as many threads as asked (helpers started), and is released cleanly.
    func testTeamRunsEveryPass() {
        for threads in [1, 2, 4] {
            let team = Parallel.Team(threads: threads)
            XCTAssertEqual(team.threads, threads)
            let seen = UnsafeMutablePointer<Int>.allocate(capacity: 37)
            defer { seen.deallocate() }
            seen.initialize(repeating: 0, count: 37)
            let body: (Int, Range<Int>) -> Void = { c, r in
                seen[c] += 1
                precondition(r == (c * 3)..<Swift.min(110, c * 3 + 3))
            }
            for _ in 0..<200 { team.forEachChunk(count: 110, chunkSize: 3, body) }
            for c in 0..<37 { XCTAssertEqual(seen[c], 200, "threads \(threads), chunk \(c)") }
            team.forEachChunk(count: 0, chunkSize: 3, body)
        }
    }

    /// A released team stops and joins its helper threads: 40 teams (and
    /// 20 two-thread transports, which make one each) leave the process's
    /// thread count where it was, give or take a pool thread of libdispatch.
    /// Independent check: /proc/self/task (before the fix: +80 and +100).
    /// A single-sample velocity on several threads splits its convolutions
    /// and attention over helper threads that the workspace
    /// keeps between calls: after 6 calls on 2 threads and 6 on 3 (the
    /// 2-thread team replaced) exactly the 3-thread team's 2 helpers run,
    /// and releasing the model joins them. Independent check: the threads
    /// named `flowrt-team` in /proc/self/task (a team per call never
    /// released would leave 18; one never released, 2).
    func testSplitOpsKeepOneTeamPerWorkspace() throws {
        let before = helperCount()
        try XCTSkipIf(before < 0, "no /proc/self/task here")
        do {
            let model = try Model.loadONNX(path: ImageNetworkTests.folder + "/tcfm_unet__dynamo__opdefault.onnx")
            let d = model.dimension
            let x = [Float](repeating: 0.25, count: d), t = [0.5]
            var v = [Float](repeating: 0, count: d)
            for threads in [2, 3] {
                for _ in 0..<6 {
                    t.withUnsafeBufferPointer { tb in
                        x.withUnsafeBufferPointer { xb in
                            v.withUnsafeMutableBufferPointer { model.velocity(times: tb, points: xb, into: $0, threads: threads) }
                        }
                    }
                }
            }
            XCTAssertTrue(v.allSatisfy(\.isFinite))
            XCTAssertEqual(settled(helperCount, atMost: before + 2), before + 2, "split ops: one 3-thread team expected")
        }
        XCTAssertEqual(settled(helperCount, atMost: before), before, "a released model left its helpers running")
    }

    /// A process forked after a single-sample velocity split its ops over a
    /// team (whose helpers stay in the parent) still evaluates the model on
    /// several threads: the child makes its own team instead of waiting for
    /// helpers it does not have, and gets the parent's values bit for bit.
    /// The child gives itself 60 s (alarm) and reports by exit status.
    func testForkedChildSplitsOnItsOwnTeam() throws {
        let model = try Model.loadONNX(path: ImageNetworkTests.folder + "/diffusers_unet__dynamo__opdefault.onnx")
        let d = model.dimension
        let x = (0..<d).map { Float(sin(Double($0) * 0.37)) }, t = [0.4]
        func velocity() -> [UInt32] {
            var v = [Float](repeating: 0, count: d)
            t.withUnsafeBufferPointer { tb in
                x.withUnsafeBufferPointer { xb in
                    v.withUnsafeMutableBufferPointer { model.velocity(times: tb, points: xb, into: $0, threads: 2) }
                }
            }
            return v.map(\.bitPattern)
        }
        let parent = velocity()
        let pid = fork()
        try XCTSkipIf(pid < 0, "fork failed")
        if pid == 0 {
            alarm(60)
            _exit(velocity() == parent ? 0 : 1)
        }
        var status: Int32 = 0
        XCTAssertEqual(waitpid(pid, &status, 0), pid)
        // WIFEXITED / WEXITSTATUS: low 7 bits 0 (no signal), exit code in bits 8-15.
        XCTAssertEqual(status & 0x7f, 0, "the child died of signal \(status & 0x7f) (14: it hung)")
        XCTAssertEqual((status >> 8) & 0xff, 0, "the child's velocity differs from the parent's")
    }

    func testReleasedTeamsLeaveNoThreads() throws {
        let before = threadCount(), helpersBefore = helperCount()
        try XCTSkipIf(before < 1, "no /proc/self/task here")
        for _ in 0..<40 {
            let team = Parallel.Team(threads: 3)
            team.forEachChunk(count: 10, chunkSize: 1) { _, _ in }
        }
        // (+2: libdispatch or XCTest may start a thread of their own meanwhile;
        // a leak here is 80 threads.)
        XCTAssertLessThanOrEqual(settled(threadCount, atMost: before + 2), before + 2, "Parallel.Team leaked its helper threads")
        XCTAssertEqual(settled(helperCount, atMost: helpersBefore), helpersBefore, "Parallel.Team leaked its helper threads")
        let model = try VelocityMLP(dimension: 2, hiddenWidths: [16, 16], seed: 3).makeModel()
        let x = Tensor(shape: [512, 2], scalars: (0..<1024).map { Float($0 % 17) / 17 })
        var o = SolverOptions.fixed(.rk4, steps: 3)
        o.threads = 2
        for _ in 0..<20 { _ = try Transport.integrate(field: model, points: x, from: 0, to: 1, options: o) }
        // libdispatch may keep a pool thread or two; the runs' teams must not add 20.
        XCTAssertLessThanOrEqual(settled(threadCount, atMost: before + 2), before + 2, "two-thread transports leaked threads")
        XCTAssertEqual(settled(helperCount, atMost: helpersBefore), helpersBefore, "two-thread transports leaked threads")
    }

    /// The chunk of a run: min(options, field preference), divided by the
    /// power of two at or below the passes per evaluation, at least 1; at
    /// least 32 chunks when that keeps 64 samples (or the chunk) per chunk.
    func testChunkFollowsFieldPassesAndCount() throws {
        let model = try VelocityMLP(dimension: 2, hiddenWidths: [16, 16], seed: 3).makeModel()
        let o = SolverOptions.dopri5()
        let big = 1 << 20
        XCTAssertEqual(o.chunked(for: model, count: big).chunkSize, Swift.min(1024, model.preferredChunkSize))
        let small = SmallChunks(model: model, chunk: 48)
        XCTAssertEqual(o.chunked(for: small, count: big).chunkSize, 48)
        XCTAssertEqual(o.chunked(for: small, passes: 3, count: big).chunkSize, 24)
        XCTAssertEqual(o.chunked(for: small, passes: 65, count: big).chunkSize, 1)
        let analytic = AnalyticMixtureFlow(mixture: try Fixtures.mixture2D(), schedule: TestTrigSchedule())
        XCTAssertEqual(o.chunked(for: analytic, passes: 2, count: big).chunkSize, 512)
        XCTAssertEqual(o.chunked(for: analytic, count: 32 * 1024).chunkSize, 1024)
        XCTAssertEqual(o.chunked(for: analytic, count: 10_000).chunkSize, 313)   // 32 chunks: 31 × 313 + 297
        XCTAssertEqual(o.chunked(for: analytic, count: 2_000).chunkSize, 64)
        XCTAssertEqual(o.chunked(for: analytic, count: 10).chunkSize, 64)
        XCTAssertEqual(o.chunked(for: small, passes: 3, count: 100).chunkSize, 24)
        // A U-Net (chunks of 1, batch chunks of 4) widens while 16 chunks remain.
        let unet = SmallChunks(model: model, chunk: 1, wide: 4)
        for (count, passes, chunk) in [(1, 1, 1), (16, 1, 1), (31, 1, 1), (32, 1, 2), (63, 1, 3), (64, 1, 4),
                                       (10_000, 1, 4), (64, 2, 2), (64, 3, 2), (10_000, 4, 1), (10_000, 785, 1)] {
            XCTAssertEqual(o.chunked(for: unet, passes: passes, count: count).chunkSize, chunk, "count \(count) passes \(passes)")
        }
        var narrow = o
        narrow.chunkSize = 2
        XCTAssertEqual(narrow.chunked(for: unet, count: 10_000).chunkSize, 2)
    }

    /// A network run in chunks of 5 samples (its preference) gives the same
    /// transports and log-densities, bit for bit, as in the default chunks,
    /// on 1 and 2 threads: the packed MLP computes every row on its own, and
    /// the chunking never depends on the thread count.
    func testPreferredChunksChangeNoResult() throws {
        let model = try VelocityMLP(dimension: 3, hiddenWidths: [32, 32], seed: 11).makeModel()
        let x = Fixtures.points(203, dimension: 3, seed: 21)
        let small = SmallChunks(model: model, chunk: 5)
        // Chunks of 1 widened (203 samples: transports in chunks of 4, Hutchinson with 2 probes in 2).
        let wide = SmallChunks(model: model, chunk: 1, wide: 4)
        for options in [SolverOptions.fixed(.rk4, steps: 7), .dopri5(rtol: 1e-6, atol: 1e-6)] {
            var reference: TransportResult?
            for field in [model, small, wide] as [any VelocityField] {
                for threads in [1, 2] {
                    var o = options
                    o.threads = threads
                    let r = try Transport.integrate(field: field, points: x, from: 0, to: 1, options: o)
                    if let ref = reference {
                        XCTAssertEqual(r.points, ref.points, "\(options.tableau.name), chunk \(field.preferredChunkSize), threads \(threads)")
                        XCTAssertEqual(r.samples, ref.samples)
                    } else { reference = r }
                }
            }
        }
        for method in [DivergenceMethod.exact, .hutchinson(probes: 2, kind: .rademacher, seed: 4)] {
            var reference: LogDensityResult?
            for field in [model, small, wide] as [any VelocityField] {
                for threads in [1, 2] {
                    var o = SolverOptions.dopri5()
                    o.threads = threads
                    let r = try Likelihood.logDensity(field: field, base: StandardNormal(dimension: 3), points: x, time: 1,
                                                      divergence: method, options: o)
                    if let ref = reference {
                        XCTAssertEqual(r.logDensities, ref.logDensities, "\(method), chunk \(field.preferredChunkSize), threads \(threads)")
                        XCTAssertEqual(r.standardErrors, ref.standardErrors)
                        XCTAssertEqual(r.samples, ref.samples)
                    } else { reference = r }
                }
            }
        }
    }

    /// A run with a progress callback advances in rounds, and one without in
    /// a single pass per chunk; both give the same results, for the ODE and
    /// the SDE, on 1 and 2 threads (with a network).
    func testProgressRoundsChangeNoResult() throws {
        let model = try VelocityMLP(dimension: 2, hiddenWidths: [32, 32], seed: 5).makeModel()
        let x = Fixtures.points(150, dimension: 2, seed: 8)
        var reports = 0
        let progress: SolverProgress = { _, _, _ in reports += 1; return true }
        var ode: TransportResult?
        for threads in [1, 2] {
            for withProgress in [false, true] {
                var o = SolverOptions.dopri5()
                o.threads = threads
                o.chunkSize = 16
                let r = try Transport.integrate(field: model, points: x, from: 0, to: 1, options: o,
                                                progress: withProgress ? progress : nil)
                if let ref = ode { XCTAssertEqual(r.points, ref.points, "threads \(threads), progress \(withProgress)") } else { ode = r }
            }
        }
        let score = try ScoreField(field: model, schedule: TrigSchedule())
        var sde: SDEResult?
        for threads in [1, 2] {
            for withProgress in [false, true] {
                var o = SDEOptions(steps: 21)
                o.threads = threads
                o.chunkSize = 16
                let r = try SDESampler(score: score, options: o).sample(count: 150, seed: 2, progress: withProgress ? progress : nil)
                if let ref = sde { XCTAssertEqual(r.points, ref.points, "SDE threads \(threads), progress \(withProgress)") } else { sde = r }
            }
        }
        XCTAssertGreaterThan(reports, 4)
    }

    /// Hutchinson probes drawn on several threads equal those drawn on one.
    func testProbesIndependentOfThreads() throws {
        let model = try VelocityMLP(dimension: 4, hiddenWidths: [8], seed: 1).makeModel()
        let one = try HutchinsonAugmentedSystem(field: model, count: 2500, firstIndex: 17, probes: 3, kind: .gaussian,
                                                seed: 6, threads: 1)
        let four = try HutchinsonAugmentedSystem(field: model, count: 2500, firstIndex: 17, probes: 3, kind: .gaussian,
                                                 seed: 6, threads: 4)
        XCTAssertEqual(one.probes, four.probes)
        var rng = RandomStream(seed: 6, purpose: .hutchinsonProbe, index: 17 + 2499)
        XCTAssertEqual(four.probes[2499 * 12], Float(rng.nextNormal()))
    }
}

/// The thread ids of this process (/proc/self/task), nil where that is not available.
private func taskIDs() -> [String]? {
    guard let dir = opendir("/proc/self/task") else { return nil }
    defer { closedir(dir) }
    var ids: [String] = []
    while let e = readdir(dir) {
        let id = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if !id.hasPrefix(".") { ids.append(id) }  // skip "." and ".."
    }
    return ids
}

/// Threads of this process, -1 where /proc/self/task is not available.
private func threadCount() -> Int { taskIDs()?.count ?? -1 }

/// Threads of this process named `Parallel.Team.helperName` (a team's helpers).
private func helperCount() -> Int {
    guard let ids = taskIDs() else { return -1 }
    return ids.filter { id in
        guard let f = fopen("/proc/self/task/\(id)/comm", "r") else { return false }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 64)
        return fgets(&line, 64, f) != nil && String(cString: line).hasPrefix(Parallel.Team.helperName)
    }.count
}

/// `count()` once it is at most `limit`, or after 2 s: a joined thread can
/// stay listed for a moment while the kernel ends it.
private func settled(_ count: () -> Int, atMost limit: Int) -> Int {
    for _ in 0..<200 {
        let n = count()
        if n <= limit { return n }
        usleep(10_000)
    }
    return count()
}
