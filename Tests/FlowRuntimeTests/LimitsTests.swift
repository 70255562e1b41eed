import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import FlowRuntime

/// Issue 16: empty batches, the checked allocation path, blocked runs equal
/// to unblocked ones bit for bit, samples independent of log-density
/// requests, progress during short runs.
final class LimitsTests: XCTestCase {
    func makeFlow(dimension d: Int = 2) throws -> Flow {
        try Flow(field: VelocityMLP(dimension: d, hiddenWidths: [16, 16], seed: 5).makeModel(), schedule: TrigSchedule())
    }

    /// Dopri5 options with chunks of `chunk` samples (blocks of 64 chunks).
    func options(chunk: Int) -> SolverOptions {
        var o = SolverOptions.dopri5(rtol: 1e-5, atol: 1e-5)
        o.chunkSize = chunk
        o.threads = 2
        return o
    }

    func testEmptyBatches() throws {
        let flow = try makeFlow()
        let s = try flow.sample(count: 0, seed: 1, logDensity: .exact)
        XCTAssertEqual(s.points.shape, [0, 2])
        XCTAssertEqual(s.logDensities, [])
        XCTAssertEqual(s.statistics.samples, 0)
        let lp = try flow.logDensity(points: Tensor(shape: [0, 2]))
        XCTAssertEqual(lp.logDensities, [])
        XCTAssertEqual(lp.basePoints.shape, [0, 2])
        let t = try flow.transport(points: Tensor(shape: [0, 2]), from: 0, to: 1)
        XCTAssertEqual(t.points.shape, [0, 2])
        let sde = try flow.sampleSDE(count: 0, seed: 1)
        XCTAssertEqual(sde.points.shape, [0, 2])
        var blocks = 0
        _ = try flow.sampleBlocks(count: 0, seed: 1) { _, _ in blocks += 1 }
        XCTAssertEqual(blocks, 0)
    }

    /// `firstNonFiniteIndex` (the vector scan behind every entry point's
    /// input check) against the element loop: ±inf, quiet and signalling
    /// NaN, a NaN with payload, at the first and last index of blocks of
    /// 256, in the tail and past several blocks, with a second bad value
    /// behind the first; the largest finite floats and denormals pass. A
    /// mask of 0x7f000000 or a scan that skips a block's last element fails.
    func testFirstNonFiniteIndexIsTheFirstInfOrNaN() {
        let bad: [Float] = [.infinity, -.infinity, .nan, .signalingNaN, Float(bitPattern: 0xffc0_1234)]
        let fine: [Float] = [.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, 0, -0.0,
                             1.5, Float(bitPattern: 0x7f7f_ffff), Float(bitPattern: 0x7f00_0000)]
        for n in [0, 1, 255, 256, 257, 511, 512, 1000, 1300] {
            var x = (0..<n).map { fine[$0 % fine.count] }
            XCTAssertNil(x.firstNonFiniteIndex, "n \(n)")
            for at in Set([0, 1, 254, 255, 256, 257, 511, 767, n - 2, n - 1]) where at >= 0 && at < n {
                for v in bad {
                    let keep = x[at]
                    x[at] = v
                    if at + 300 < n { x[at + 300] = .nan }
                    let expected = x.firstIndex { !$0.isFinite }
                    XCTAssertEqual(x.firstNonFiniteIndex, expected, "n \(n) at \(at) value \(v.bitPattern)")
                    x[at] = keep
                    if at + 300 < n { x[at + 300] = fine[(at + 300) % fine.count] }
                }
            }
        }
    }

    func testCheckedAllocationsThrowOutOfMemory() {
        XCTAssertThrowsError(try HostMemory.byteCount(Int.max / 2, of: Double.self, for: "test call")) { error in
            guard case FlowError.outOfMemory(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("test call"), m)
        }
        // Within the 2^46 limit but more than any test machine has.
        XCTAssertThrowsError(try HostBuffer<Float>(count: 1 << 43, for: "huge buffer")) { error in
            guard case FlowError.outOfMemory(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("huge buffer") && m.contains("\(4 << 43)"), m)
        }
        XCTAssertThrowsError(try HostMemory.array(repeating: 0.0, count: 1 << 44, for: "huge array"))
        XCTAssertNoThrow(try HostMemory.array(repeating: Float(1), count: 1000, for: "small"))
        let b = try? HostBuffer<Double>(repeating: 2, count: 10, for: "ten")
        XCTAssertEqual(b?.buffer.reduce(0, +), 20)
    }

    /// Blocks (64 chunks of 3 samples = 192 here) cut where the integrator's
    /// chunks do, so a blocked run equals one unblocked run bit for bit, with
    /// a network field and with Hutchinson probes indexed across blocks.
    func testBlockedRunsEqualOneRun() throws {
        let flow = try makeFlow()
        let o = options(chunk: 3)
        XCTAssertEqual(Transport.blockSize(o), 192)
        // Wide states: fewer chunks per block (2^22 Doubles at most), never none.
        XCTAssertEqual(Transport.blockSize(chunk: 1024, width: 2), 65536)
        XCTAssertEqual(Transport.blockSize(chunk: 1024, width: 785), 5 * 1024)
        XCTAssertEqual(Transport.blockSize(chunk: 1024, width: 1 << 20), 1024)
        let n = 700  // four blocks, the last short
        let x = flow.base.samples(count: n, seed: 9)
        let blocked = try Transport.integrate(field: flow.field, points: x, from: 0, to: 1, options: o)
        let whole = try Transport.integrateBlock(field: flow.field, points: x, from: 0, to: 1, options: o, progress: nil)
        XCTAssertEqual(blocked.points.scalars.map(\.bitPattern), whole.points.scalars.map(\.bitPattern))
        XCTAssertEqual(blocked.samples, whole.samples)
        XCTAssertEqual(blocked.statistics, whole.statistics)

        let method = DivergenceMethod.hutchinson(probes: 2, kind: .gaussian, seed: 4)
        let lb = try Transport.integrateWithLogDensityChange(field: flow.field, points: x, from: 1, to: 0,
                                                             divergence: method, options: o, firstIndex: 17)
        let lw = try Transport.integrateWithLogDensityChangeBlock(field: flow.field, points: x, from: 1, to: 0,
                                                                  divergence: method, options: o, firstIndex: 17,
                                                                  controlChange: true, progress: nil)
        XCTAssertEqual(lb.change.map(\.bitPattern), lw.change.map(\.bitPattern))
        XCTAssertEqual(lb.standardErrors?.map(\.bitPattern), lw.standardErrors?.map(\.bitPattern))
        XCTAssertEqual(lb.points.scalars.map(\.bitPattern), lw.points.scalars.map(\.bitPattern))

        // Streaming hands over the blocks in order, covering 0..<n once.
        var ranges: [Range<Int>] = []
        _ = try flow.sampleBlocks(count: n, seed: 3, solver: o) { range, block in
            ranges.append(range)
            XCTAssertEqual(block.points.shape, [range.count, 2])
        }
        XCTAssertEqual(ranges, [0..<192, 192..<384, 384..<576, 576..<700])
    }

    /// The SDE sampler reports progress like the ODE calls (issue 16 item
    /// 4): after 1, 2, 4, 12, 20 steps of each block (20 steps: 5 reports
    /// per block, fractions rising to 1, done counting finished samples),
    /// with samples identical to a run without progress; returning false
    /// cancels.
    func testSDEProgressReportsDuringTheRun() throws {
        let flow = try makeFlow()
        var o = SDEOptions(steps: 20)
        o.chunkSize = 2
        o.threads = 2
        let sampler = try SDESampler(score: flow.scoreField(), options: o)
        var reports: [(Int, Int, Double)] = []
        let watched = try sampler.sample(count: 300, seed: 8, firstIndex: 5) { done, total, fraction in
            reports.append((done, total, fraction)); return true
        }
        XCTAssertEqual(watched.points.scalars.map(\.bitPattern),
                       try sampler.sample(count: 300, seed: 8, firstIndex: 5).points.scalars.map(\.bitPattern))
        XCTAssertEqual(reports.count, 3 * 5, "blocks of 128, 128, 44")
        XCTAssertEqual(reports.map(\.0), [0, 0, 0, 0, 128, 128, 128, 128, 128, 256, 256, 256, 256, 256, 300])
        XCTAssertTrue(reports.allSatisfy { $0.1 == 300 })
        XCTAssertEqual(reports.map(\.2), reports.map(\.2).sorted())
        XCTAssertEqual(reports.last?.2, 1)
        XCTAssertEqual(reports[0].2, 128.0 / 20 / 300, accuracy: 1e-12, "one step of the first block")
        var calls = 0
        XCTAssertThrowsError(try sampler.sample(count: 300, seed: 8) { _, _, _ in calls += 1; return calls < 3 }) {
            guard case FlowError.cancelled = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(calls, 3)
    }

    /// SDE blocks equal one block.
    func testSDEBlocksEqualOneRun() throws {
        let flow = try makeFlow()
        var o = SDEOptions(steps: 20)
        o.chunkSize = 2
        o.threads = 2
        let sampler = try SDESampler(score: flow.scoreField(), options: o)
        XCTAssertEqual(sampler.blockSize, 128)
        let n = 300
        let blocked = try sampler.sample(count: n, seed: 8, firstIndex: 5)
        let grid = try _SDEGrid(sampler, from: 0)
        let b = sampler.score.base
        var start = Tensor(shape: [n, 2])
        for i in 0..<n {
            var rng = RandomStream(seed: 8, purpose: .baseSample, index: 5 + UInt64(i))
            for j in 0..<2 { start.scalars[i * 2 + j] = Float(b.mean[j] + b.standardDeviation[j] * rng.nextNormal()) }
        }
        let whole = try sampler.run(grid, points: start, seed: 8, firstIndex: 5)
        XCTAssertEqual(blocked.points.scalars.map(\.bitPattern), whole.points.scalars.map(\.bitPattern))
    }

    /// The same seed gives the same samples, bit for bit, with or without
    /// log-densities (exact and Hutchinson); the log-densities still agree
    /// with the backward log-density at tight tolerance.
    func testSamplesDoNotDependOnLogDensityRequest() throws {
        let flow = try makeFlow()
        let o = SolverOptions.dopri5(rtol: 1e-5, atol: 1e-5)
        let plain = try flow.sample(count: 500, seed: 42, solver: o)
        let exact = try flow.sample(count: 500, seed: 42, solver: o, logDensity: .exact)
        let hutch = try flow.sample(count: 500, seed: 42, solver: o,
                                    logDensity: .hutchinson(probes: 4, kind: .rademacher, seed: 1))
        XCTAssertEqual(plain.points.scalars.map(\.bitPattern), exact.points.scalars.map(\.bitPattern))
        XCTAssertEqual(plain.points.scalars.map(\.bitPattern), hutch.points.scalars.map(\.bitPattern))
        XCTAssertEqual(plain.statistics.steps, exact.statistics.steps)
        let back = try flow.logDensity(points: exact.points, solver: .dopri5(rtol: 1e-8, atol: 1e-8))
        let worst = zip(back.logDensities, exact.logDensities!).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 1e-3)
    }

    /// A log-density run of a few steps reports before it ends.
    func testLogDensityReportsProgressWhileRunning() throws {
        let flow = try makeFlow()
        var reports: [Int] = []
        let x = flow.base.samples(count: 100, seed: 2)
        _ = try flow.logDensity(points: x, progress: { done, total, _ in
            reports.append(done)
            XCTAssertEqual(total, 100)
            return true
        })
        XCTAssertGreaterThanOrEqual(reports.count, 2)
        XCTAssertLessThan(reports.first ?? 100, 100)
        XCTAssertEqual(reports.last, 100)
    }

    /// Cancelling in a later block names the run's counts, not the block's.
    func testCancelInALaterBlockCountsTheRun() throws {
        let flow = try makeFlow()
        let o = options(chunk: 2)  // blocks of 128
        XCTAssertThrowsError(try flow.sample(count: 300, seed: 1, solver: o, progress: { done, _, _ in done < 200 })) { error in
            guard case FlowError.cancelled(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("of 300 samples"), m)
        }
    }
}

/// The readers and writers behind the CLI's input discipline and streaming.
final class StreamingIOTests: XCTestCase {
    func testCSVHeaderOnlyWhenAskedOrWithoutNumbers() throws {
        XCTAssertEqual(try CSV.decode("x,y\n1,2\n").shape, [1, 2])
        XCTAssertEqual(try CSV.decode("5,6\n1,2\n").shape, [2, 2])
        XCTAssertEqual(try CSV.decode("5,6\n1,2\n", header: true).shape, [1, 2])
        XCTAssertEqual(try CSV.decode("a,1\n1,2\n", header: true).values, [1, 2])
        XCTAssertThrowsError(try CSV.decode("a,1\n1,2\n")) { error in
            XCTAssertTrue("\(error)".contains("line 1, column 1") && "\(error)".contains("'a'"), "\(error)")
        }
        XCTAssertThrowsError(try CSV.decode("# c\n1,2\n3,4,\n")) { error in
            XCTAssertTrue("\(error)".contains("line 3, column 3"), "\(error)")
        }
    }

    func testNPYRefusesIntegerDtypesByName() throws {
        var bytes = NPY.header(shape: [2], type: .float32)
        let f4 = Array("<f4".utf8)
        let at = (0...(bytes.count - 3)).first { Array(bytes[$0..<$0 + 3]) == f4 }!
        bytes[at + 1] = UInt8(ascii: "i")  // '<i4': int32
        XCTAssertThrowsError(try NPY.decode(bytes + [UInt8](repeating: 0, count: 8))) { error in
            guard case FlowError.unsupported(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("int32") && m.contains("float32 and float64"), m)
        }
    }

    func testStreamedNPYEqualsWholeFile() throws {
        let path = "/tmp/flowrt-stream-\(getpid()).npy"
        defer { unlink(path) }
        let values = (0..<30).map { Double($0) * 0.5 - 3 }
        let w = try NPY.Writer(path: path, shape: [15, 2], type: .float64)
        try w.append(values[0..<8])
        XCTAssertThrowsError(try w.finish())  // incomplete: refused, no file
        XCTAssertNotEqual(access(path, F_OK), 0)
        try w.append(values[8...])
        XCTAssertThrowsError(try w.append([1.0]))  // beyond the shape
        try w.finish()
        XCTAssertEqual(try FileIO.read(path), NPY.encode(NumericArray(shape: [15, 2], values: values), as: .float64))
        let r = try NPY.Reader(path: path)
        XCTAssertEqual(r.rows, 15)
        XCTAssertEqual(r.columns, 2)
        XCTAssertEqual(try r.read(rows: 4..<7), Array(values[8..<14]))
        XCTAssertEqual(try r.read(rows: 0..<0), [])
    }
}
