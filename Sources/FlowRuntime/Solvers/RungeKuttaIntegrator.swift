#if canImport(Glibc)
import Glibc
#endif

/// How one sample's integration went.
public struct SampleStatistics: Sendable, Equatable {
    /// How the sample's integration ended.
    public var status: SolverStatus = .ok
    /// Accepted steps.
    public var steps: Int32 = 0
    /// Rejected steps.
    public var rejections: Int32 = 0
    /// Field evaluations of this sample (including step-size selection).
    public var evaluations: Int32 = 0
    /// The time the sample reached when it stopped (0 before it stops).
    public var stopTime: Double = 0
    /// The next step size it would have tried when it stopped (signed; 0
    /// before it stops): for `.stepUnderflow`, the step that underflowed.
    public var lastStep: Double = 0
    /// A sample that has not been integrated yet.
    public init() {}
}

extension SolverStatistics {
    /// Sums per-sample statistics.
    public init<S: Sequence>(_ samples: S) where S.Element == SampleStatistics {
        self.init()
        for s in samples {
            if s.status == .stepUnderflow, firstUnderflow == nil {
                firstUnderflow = (self.samples, s.stopTime, s.lastStep)
            }
            self.samples += 1
            steps += Int(s.steps)
            rejections += Int(s.rejections)
            evaluations += Int(s.evaluations)
            maxStepsPerSample = Swift.max(maxStepsPerSample, Int(s.steps))
            switch s.status {
            case .ok: break
            case .maxSteps: maxStepsSamples += 1
            case .nonFinite: nonFiniteSamples += 1
            case .stepUnderflow: stepUnderflowSamples += 1
            }
        }
    }
}

/// Progress of a run: finished samples of all samples, and the mean fraction
/// of [t0, t1] covered. Return false to cancel. Called on the calling thread.
public typealias SolverProgress = (_ finished: Int, _ total: Int, _ fraction: Double) -> Bool

/// The explicit Runge–Kutta stepper: any `ButcherTableau`, fixed or adaptive
/// steps, per-sample step control, over any [t0, t1] (forward or backward).
///
/// Per-sample control: every sample carries its own time, step size, cached
/// first stage, and accept/reject decision. Each stage gathers the active
/// samples into contiguous rows and evaluates the field once for all of them,
/// each at its own time; finished samples drop out. A row's arithmetic never
/// involves another row, so the integrator adds no coupling between samples:
/// with a row-exact field results are bit-identical for any batch, chunking
/// and thread count. With a network, the GEMM's rounding of a row can depend
/// on the number of rows in the call (≈1e-7 relative); results are then
/// bit-identical across thread counts and agree to that level across batches.
///
/// The batch is cut into chunks of `options.chunkSize` samples run on
/// `options.threads` threads (`Parallel.forEachChunk`): each thread
/// integrates a chunk end to end (stage combinations, error norms and step
/// control included), so nothing of a step is serial. The system's
/// per-evaluation scratch (`System.Context`: the network's workspace and the
/// Float staging buffers) is not per chunk but borrowed from a pool for the
/// duration of one chunk's advance: one per thread, reused across chunks
/// and steps, so a run allocates it `threads` times, not once per chunk,
/// and a thread's evaluations stay in the same (cache-warm) memory.
struct RungeKuttaIntegrator<System: BatchedSystem> {
    let system: System
    let options: SolverOptions

    /// Integrates `states` ([n, width], in place) from t0 to t1.
    /// - Returns: per-sample statistics.
    /// - Throws: `FlowError.cancelled` when `progress` returns false (states
    ///   are then partially advanced); `.invalidArgument` for bad options or times.
    func run(states: UnsafeMutableBufferPointer<Double>, from t0: Double, to t1: Double,
             progress: SolverProgress? = nil) throws -> [SampleStatistics] {
        try options.validate()
        guard t0.isFinite, t1.isFinite else { throw FlowError.invalidArgument("times t0 = \(t0), t1 = \(t1) must be finite") }
        let w = system.width, n = states.count / Swift.max(w, 1)
        var stats = [SampleStatistics](repeating: SampleStatistics(), count: n)
        if n == 0 || t0 == t1 { return stats }
        let chunkSize = options.chunkSize
        let chunks = (n + chunkSize - 1) / chunkSize
        let base = states.baseAddress!

        try stats.withUnsafeMutableBufferPointer { statsBuffer in
            let statsBase = statsBuffer.baseAddress!
            // Chunks are created lazily by the thread that owns them; the
            // array of slots is written at distinct indices only.
            var runs = [_ChunkRun<System>?](repeating: nil, count: chunks)
            try runs.withUnsafeMutableBufferPointer { slots in
                let slotBase = slots.baseAddress!
                // A chunk whose scratch cannot be allocated records the error
                // in its slot; the first (in chunk order) is thrown after the pass.
                let failures = UnsafeMutablePointer<FlowError?>.allocate(capacity: chunks)
                failures.initialize(repeating: nil, count: chunks)
                defer { failures.deinitialize(count: chunks); failures.deallocate() }
                let contexts = _Pool { system.makeContext() }
                func chunkRun(_ c: Int) -> _ChunkRun<System>? {
                    if let r = slotBase[c] { return r }
                    let lo = c * chunkSize, hi = Swift.min(n, lo + chunkSize)
                    do {
                        let r = try _ChunkRun(system: system, options: options, states: base + lo * w,
                                              stats: statsBase + lo, first: lo, count: hi - lo, from: t0, to: t1)
                        slotBase[c] = r
                        return r
                    } catch {
                        failures[c] = error as? FlowError ?? .outOfMemory("\(error)")
                        return nil
                    }
                }
                func throwFailure() throws {
                    for c in 0..<chunks { if let e = failures[c] { throw e } }
                }
                // The calling thread and helpers started for this run (no
                // allocation per round; a fixed count per run).
                let team = Parallel.Team(threads: Swift.min(options.threads, chunks))
                guard let progress else {
                    team.forEachChunk(count: chunks, chunkSize: 1) { c, _ in
                        contexts.borrow { chunkRun(c)?.advance(iterations: .max, context: $0) }
                        slotBase[c] = nil  // frees the chunk's buffers early
                    }
                    try throwFailure()
                    return
                }
                // With a progress callback: rounds of a few iterations per
                // chunk, then a report on this thread. Rounds change timing only.
                // Rounds of 1, 2, 4, then 8 iterations: a short run (a few
                // steps, typical of log-densities) still reports while it
                // runs, and a long one pays one barrier per 8 steps.
                var finished = false
                var iterations = 1
                let round: (Int, Range<Int>) -> Void = { c, _ in
                    contexts.borrow { chunkRun(c)?.advance(iterations: iterations, context: $0) }
                }
                while !finished {
                    team.forEachChunk(count: chunks, chunkSize: 1, round)
                    iterations = Swift.min(8, 2 * iterations)
                    try throwFailure()
                    var done = 0, fraction = 0.0
                    for c in 0..<chunks {
                        guard let r = slotBase[c] else { continue }
                        done += r.finishedCount
                        fraction += r.coveredFraction
                    }
                    finished = done == n
                    if !progress(done, n, fraction / Double(n)) {
                        throw FlowError.cancelled("cancelled by the progress callback after \(done) of \(n) samples finished")
                    }
                }
            }
        }
        return stats
    }
}

/// One chunk's integration state: the samples, their times, steps and
/// stages. A state machine (`advance`) so that runs with progress callbacks
/// can interleave reports; results do not depend on how it is advanced.
final class _ChunkRun<System: BatchedSystem> {
    let system: System
    /// The evaluation scratch lent to the current `advance` (nil between).
    private var context: System.Context?
    let tableau: ButcherTableau
    let controller: StepSizeController?
    let fixedSteps: Int
    let maxSteps: Int
    let n: Int, w: Int, first: Int
    let t0: Double, t1: Double, direction: Double
    /// 1/(q+1) with q the lower order of the embedded pair.
    let exponent: Double

    // Per sample.
    let y: UnsafeMutablePointer<Double>          // [n, w], the caller's states
    let stats: UnsafeMutablePointer<SampleStatistics>
    var time: [Double], step: [Double], done: [Bool], hasFirstStage: [Bool]
    let firstStage: UnsafeMutablePointer<Double> // [n, w] cached k1 = f(t, y)
    var initialised = false
    private(set) var finishedCount = 0

    // Gathered rows (capacity n).
    var rows: [Int], rowTimes: [Double], rowSteps: [Double], rowTargets: [Double], stageTimes: [Double], rowSamples: [Int]
    let rowStates: UnsafeMutablePointer<Double>   // [n, w]
    let stageState: UnsafeMutablePointer<Double>  // [n, w]
    let stageDerivs: [UnsafeMutablePointer<Double>] // s × [n, w]
    let proposal: UnsafeMutablePointer<Double>    // [n, w]

    /// The chunk's [n, w] scratch (first stages, rows, stages, proposal),
    /// allocated through `HostMemory` and freed with the chunk.
    private let scratch: [HostBuffer<Double>]
    /// Components in the error norm (`System.controlledWidth`).
    let cw: Int

    /// - Throws: `.outOfMemory` when the chunk's scratch cannot be allocated.
    init(system: System, options: SolverOptions, states: UnsafeMutablePointer<Double>,
         stats: UnsafeMutablePointer<SampleStatistics>, first: Int, count: Int, from t0: Double, to t1: Double) throws {
        let (size, overflow) = count.multipliedReportingOverflow(by: system.width)
        if overflow { throw FlowError.outOfMemory("solver scratch: \(count) × \(system.width) states overflow") }
        scratch = try (0..<(options.tableau.stages + 4)).map { _ in try HostBuffer<Double>(count: size, for: "solver scratch") }
        cw = Swift.min(Swift.max(system.controlledWidth, 1), system.width)
        self.system = system
        tableau = options.tableau
        switch options.control {
        case .fixed(let s): fixedSteps = s; controller = nil
        case .adaptive(let c): fixedSteps = 0; controller = c
        }
        maxSteps = options.maxSteps
        n = count
        w = system.width
        self.first = first
        self.t0 = t0
        self.t1 = t1
        direction = t1 > t0 ? 1 : -1
        exponent = 1 / Double(Swift.min(tableau.order, tableau.embeddedOrder ?? tableau.order) + 1)
        y = states
        self.stats = stats
        time = [Double](repeating: t0, count: count)
        step = [Double](repeating: 0, count: count)
        done = [Bool](repeating: false, count: count)
        hasFirstStage = [Bool](repeating: false, count: count)
        firstStage = scratch[0].pointer
        rows = []; rows.reserveCapacity(count)
        rowTimes = [Double](repeating: 0, count: count)
        rowSteps = [Double](repeating: 0, count: count)
        rowTargets = [Double](repeating: 0, count: count)
        stageTimes = [Double](repeating: 0, count: count)
        rowSamples = [Int](repeating: 0, count: count)
        rowStates = scratch[1].pointer
        stageState = scratch[2].pointer
        proposal = scratch[3].pointer
        stageDerivs = scratch[4...].map(\.pointer)
    }

    /// Σ over this chunk's samples of the fraction of [t0, t1] covered.
    var coveredFraction: Double {
        var s = 0.0
        for i in 0..<n { s += (time[i] - t0) / (t1 - t0) }
        return s
    }

    // MARK: Evaluation on gathered rows

    /// Evaluates f for `m` rows: times `ts`, states `ys` → `out`; counts one
    /// evaluation for each sample in `sampleRows`.
    @inline(__always)
    private func evaluate(_ m: Int, times ts: UnsafeBufferPointer<Double>, states ys: UnsafePointer<Double>,
                          into out: UnsafeMutablePointer<Double>, sampleRows: ArraySlice<Int>) {
        rowSamples.withUnsafeMutableBufferPointer { sp in
            for (r, i) in sampleRows.enumerated() { sp[r] = first + i; stats[i].evaluations += 1 }
            system.evaluate(times: ts, states: ys, samples: UnsafeBufferPointer(rebasing: sp[0..<m]),
                            into: out, context: context!)
        }
    }

    @inline(__always)
    private func isFinite(_ p: UnsafePointer<Double>, _ count: Int) -> Bool {
        var s = 0.0
        for j in 0..<count { s += p[j] * 0 }
        return s == 0  // NaN or ±∞ anywhere makes the sum NaN
    }

    /// Evaluates the first stage of every active sample that lacks it;
    /// samples whose derivative is not finite stop with `.nonFinite`.
    private func fillFirstStages() {
        rows.removeAll(keepingCapacity: true)
        for i in 0..<n where !done[i] && !hasFirstStage[i] { rows.append(i) }
        let m = rows.count
        if m == 0 { return }
        for (r, i) in rows.enumerated() {
            rowTimes[r] = time[i]
            (rowStates + r * w).update(from: y + i * w, count: w)
        }
        rowTimes.withUnsafeBufferPointer { tb in
            evaluate(m, times: UnsafeBufferPointer(rebasing: tb[0..<m]), states: rowStates, into: stageState, sampleRows: rows[...])
        }
        for (r, i) in rows.enumerated() {
            let k = stageState + r * w
            if isFinite(k, w) {
                (firstStage + i * w).update(from: k, count: w)
                hasFirstStage[i] = true
            } else {
                stop(i, .nonFinite)
            }
        }
    }

    private func stop(_ i: Int, _ status: SolverStatus) {
        done[i] = true
        stats[i].status = status
        stats[i].stopTime = time[i]
        stats[i].lastStep = step[i]
        finishedCount += 1
    }

    // MARK: Initial step (Hairer, Nørsett & Wanner I, §II.4)

    /// Chooses each sample's first step from two evaluations (f(t0, y0) is
    /// reused as the first stage).
    private func selectInitialSteps() {
        guard let c = controller else {
            for i in 0..<n { step[i] = direction * abs(t1 - t0) / Double(fixedSteps) }
            return
        }
        let span = abs(t1 - t0)
        if let h = c.initialStep {
            for i in 0..<n { step[i] = direction * Swift.min(h, span, c.maxStep) }
            return
        }
        fillFirstStages()
        rows.removeAll(keepingCapacity: true)
        for i in 0..<n where !done[i] { rows.append(i) }
        let m = rows.count
        if m == 0 { return }
        var h0 = [Double](repeating: 0, count: m), d1s = [Double](repeating: 0, count: m)
        for (r, i) in rows.enumerated() {
            var d0 = 0.0, d1 = 0.0
            for j in 0..<cw {
                let yj = y[i * w + j], sc = c.scale(yj, yj)
                d0 += (yj / sc) * (yj / sc)
                let f = firstStage[i * w + j] / sc
                d1 += f * f
            }
            d0 = (d0 / Double(cw)).squareRoot(); d1 = (d1 / Double(cw)).squareRoot()
            var h = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1
            h = Swift.min(h, span)
            h0[r] = h; d1s[r] = d1
            rowTimes[r] = time[i] + direction * h
            for j in 0..<w { rowStates[r * w + j] = y[i * w + j] + direction * h * firstStage[i * w + j] }
        }
        rowTimes.withUnsafeBufferPointer { tb in
            evaluate(m, times: UnsafeBufferPointer(rebasing: tb[0..<m]), states: rowStates, into: stageState, sampleRows: rows[...])
        }
        let p = Double(tableau.order)
        for (r, i) in rows.enumerated() {
            var d2 = 0.0
            for j in 0..<cw {
                let yj = y[i * w + j], sc = c.scale(yj, yj)
                let df = (stageState[r * w + j] - firstStage[i * w + j]) / sc
                d2 += df * df
            }
            d2 = (d2 / Double(cw)).squareRoot() / h0[r]
            let dm = Swift.max(d1s[r], d2)
            let h1 = dm.isFinite ? (dm <= 1e-15 ? Swift.max(1e-6, h0[r] * 1e-3) : pow(0.01 / dm, 1 / (p + 1))) : h0[r]
            step[i] = direction * Swift.min(100 * h0[r], h1, span, c.maxStep)
        }
    }

    // MARK: Stepping

    /// Runs up to `iterations` steps (each: every active sample attempts one
    /// step), evaluating with `context` (held only during the call).
    func advance(iterations: Int, context: System.Context) {
        self.context = context
        defer { self.context = nil }
        if !initialised {
            initialised = true
            selectInitialSteps()
        }
        var it = 0
        while it < iterations && finishedCount < n {
            attemptStep()
            it += 1
        }
    }

    /// One attempted step for every active sample.
    private func attemptStep() {
        fillFirstStages()
        rows.removeAll(keepingCapacity: true)
        for i in 0..<n where !done[i] { rows.append(i) }
        let m = rows.count
        if m == 0 { return }
        let s = tableau.stages
        // Gather: times, states, step sizes (clipped at t1), first stages.
        for (r, i) in rows.enumerated() {
            rowTimes[r] = time[i]
            var target = time[i] + step[i]
            if controller == nil {
                // Fixed steps land on t0 + k (t1 − t0) / N exactly.
                let k = Int(stats[i].steps) + 1
                target = k == fixedSteps ? t1 : t0 + Double(k) * (t1 - t0) / Double(fixedSteps)
            } else if abs(step[i]) >= abs(t1 - time[i]) {
                target = t1
            }
            rowTargets[r] = target
            rowSteps[r] = target - time[i]
            (rowStates + r * w).update(from: y + i * w, count: w)
            (stageDerivs[0] + r * w).update(from: firstStage + i * w, count: w)
        }
        // Stages 1..<s, each one batched evaluation at the rows' own times.
        for stage in 1..<s {
            let a = tableau.a[stage], cs = tableau.c[stage]
            for r in 0..<m {
                let h = rowSteps[r]
                for j in 0..<w {
                    var acc = 0.0
                    for (l, al) in a.enumerated() where al != 0 { acc += al * stageDerivs[l][r * w + j] }
                    stageState[r * w + j] = rowStates[r * w + j] + h * acc
                }
            }
            for r in 0..<m { stageTimes[r] = cs == 1 ? rowTargets[r] : rowTimes[r] + cs * rowSteps[r] }
            stageTimes.withUnsafeBufferPointer { tb in
                evaluate(m, times: UnsafeBufferPointer(rebasing: tb[0..<m]), states: stageState,
                         into: stageDerivs[stage], sampleRows: rows[...])
            }
        }
        // Proposal y₁ and, for adaptive runs, the error norm; then per-row decisions.
        let b = tableau.b, e = tableau.errorWeights
        for (r, i) in rows.enumerated() {
            let h = rowSteps[r]
            var norm2 = 0.0
            for j in 0..<w {
                var acc = 0.0, err = 0.0
                for l in 0..<s {
                    let k = stageDerivs[l][r * w + j]
                    if b[l] != 0 { acc += b[l] * k }
                    if let e, e[l] != 0 { err += e[l] * k }
                }
                let y0 = rowStates[r * w + j], y1 = y0 + h * acc
                proposal[r * w + j] = y1
                if let c = controller, j < cw {
                    let q = h * err / c.scale(y0, y1)
                    norm2 += q * q
                }
            }
            let finite = isFinite(proposal + r * w, w)
            guard let c = controller else {
                // Fixed step: always accepted unless the state blew up.
                if !finite { stop(i, .nonFinite); continue }
                accept(i, row: r)
                if Int(stats[i].steps) >= fixedSteps { stop(i, .ok) }
                else if Int(stats[i].steps) >= maxSteps { stop(i, .maxSteps) }
                continue
            }
            let norm = finite ? (norm2 / Double(cw)).squareRoot() : .nan
            let accepted = norm <= 1
            let factor = c.factor(errorNorm: norm, exponent: exponent, accepted: accepted)
            if accepted {
                accept(i, row: r)
                if rowTargets[r] == t1 { stop(i, .ok); continue }
            } else {
                stats[i].rejections += 1
            }
            step[i] = direction * Swift.min(abs(h) * factor, c.maxStep)
            if Int(stats[i].steps) + Int(stats[i].rejections) >= maxSteps {
                stop(i, .maxSteps)
            } else if abs(step[i]) <= 1e-14 * Swift.max(1, abs(time[i])) {
                // The step underflowed: the error control cannot be met here.
                stop(i, finite ? .stepUnderflow : .nonFinite)
            }
        }
    }

    @inline(__always)
    private func accept(_ i: Int, row r: Int) {
        (y + i * w).update(from: proposal + r * w, count: w)
        time[i] = rowTargets[r]
        stats[i].steps += 1
        if tableau.firstSameAsLast {
            (firstStage + i * w).update(from: stageDerivs[tableau.stages - 1] + r * w, count: w)
            if !isFinite(firstStage + i * w, w) { hasFirstStage[i] = false }
        } else {
            hasFirstStage[i] = false
        }
    }
}

/// Scratch objects shared by the chunks of one run: `borrow` lends one not
/// in use (making a new one only when all are lent), so a run holds as many
/// as threads ran at once. What a chunk computes never depends on which
/// object it borrowed (each is fully overwritten before it is read).
final class _Pool<Element>: @unchecked Sendable {
    private var free: [Element] = []
    private let lock = Mutex()
    private let make: () -> Element

    init(_ make: @escaping () -> Element) { self.make = make }

    func borrow<R>(_ body: (Element) throws -> R) rethrows -> R {
        let e = lock.withLock { free.popLast() } ?? make()
        defer { lock.withLock { free.append(e) } }
        return try body(e)
    }
}
