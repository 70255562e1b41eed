import CKernels
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Deterministic data parallelism over fixed chunks.
///
/// Work 0..<count is cut into chunks of `chunkSize` (the last may be short)
/// *independently of the thread count*, and each chunk is computed by exactly
/// one thread; a chunk's result must not depend on which thread ran it or
/// which pooled scratch it borrowed (scratch is fully written before it is
/// read), so results are bit-identical for any number of threads. Reductions over chunks must be combined by the
/// caller in chunk order.
public enum Parallel {
    /// The default thread count: `FLOWRT_NUM_THREADS` if set to a positive
    /// integer when first asked, else the number of online processors.
    /// Read once (sysconf reads sysfs, too slow for every call).
    public static let defaultThreads: Int = {
        if let s = getenv("FLOWRT_NUM_THREADS"), let n = Int(String(cString: s)), n > 0 { return Swift.min(n, 256) }
        return Swift.max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()

    /// Calls `body(chunk, range)` for every chunk; chunks run concurrently on
    /// up to `threads` threads, each thread claiming the next unclaimed chunk
    /// when it finishes one (so chunks of unequal cost — adaptive steps, a
    /// short last chunk — even out). Which thread runs a chunk varies from
    /// run to run; what a chunk computes does not.
    /// `body` must only write memory belonging to its range or chunk.
    public static func forEachChunk(count: Int, chunkSize: Int, threads: Int,
                                    _ body: (_ chunk: Int, _ range: Range<Int>) -> Void) {
        forEachChunk(count: count, chunkSize: chunkSize, threads: threads) { _, c, r in body(c, r) }
    }

    /// `forEachChunk`, also telling `body` which worker (0 ..< min(threads,
    /// chunks); no two run at once with the same number) runs the chunk:
    /// for per-worker scratch.
    static func forEachChunk(count: Int, chunkSize: Int, threads: Int,
                             _ body: (_ worker: Int, _ chunk: Int, _ range: Range<Int>) -> Void) {
        precondition(chunkSize > 0)
        let chunks = (count + chunkSize - 1) / chunkSize
        if chunks == 0 { return }
        let workers = Swift.max(1, Swift.min(threads, chunks))
        func range(_ c: Int) -> Range<Int> { (c * chunkSize)..<Swift.min(count, (c + 1) * chunkSize) }
        if workers == 1 {
            for c in 0..<chunks { body(0, c, range(c)) }
            return
        }
        // The next unclaimed chunk (a fetch-and-add on the caller's stack:
        // no allocation per call).
        let next = Atomic<Int>(0)
        withoutActuallyEscaping(body) { _ in
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                while true {
                    let c = next.add(1, ordering: .relaxed).oldValue
                    if c >= chunks { return }
                    body(worker, c, range(c))
                }
            }
        }
    }
}

/// A pthread mutex (FlowRuntime does not depend on Foundation, so that
/// libflowrt.so stays small and self-contained).
final class Mutex: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    init() {
        m = .allocate(capacity: 1)
        pthread_mutex_init(m, nil)
    }
    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }
    func lock() { pthread_mutex_lock(m) }
    func unlock() { pthread_mutex_unlock(m) }
    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock(); defer { unlock() }
        return try body()
    }
}

extension Parallel {
    /// A team of `threads` threads for a run of many parallel passes (solver
    /// rounds between progress reports, SDE slices, the split ops of a
    /// single-sample velocity): the calling thread plus `threads − 1` helper
    /// threads started with the team and stopped when it is released.
    /// `forEachChunk` on a team claims chunks exactly like
    /// `Parallel.forEachChunk` (results never depend on the thread count) but
    /// allocates nothing per pass — libdispatch's `concurrentPerform`
    /// allocates a few blocks per call — and reaches its helpers without a
    /// wake-up: after a pass a helper polls for the next one for
    /// `spinNanoseconds` before it parks on a condition variable, and the
    /// caller polls for the helpers' end as long before it parks. (Waking a
    /// parked thread costs tens of microseconds on a virtual machine: a
    /// 100 µs convolution split over two cores gained nothing with it.)
    /// Passes run one at a time, from the thread that made the team.
    /// The body is an escaping closure so that a run makes it once and
    /// passes the same one to every pass (a non-escaping closure handed to
    /// other threads needs `withoutActuallyEscaping`, which allocates).
    final class Team: @unchecked Sendable {
        /// How long a helper polls for the next pass, and the caller for the
        /// helpers to finish, before parking.
        static let spinNanoseconds: UInt64 = 200_000
        private var helpers: [pthread_t] = []
        /// Threads running a pass: the caller and the helpers that started.
        var threads: Int { helpers.count + 1 }
        /// The thread count the team was made for (`threads` may be fewer).
        let requested: Int
        private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        private let finished = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        /// Passes started; a helper runs a pass when it sees this change.
        /// Written under `mutex` (so a parked helper cannot miss it), read
        /// without it while polling.
        private let generation = Atomic<Int>(0)
        /// Helpers still in the current pass.
        private let busyHelpers = Atomic<Int>(0)
        /// Guarded by `mutex`.
        private var stopping = false
        /// The pass's body (`job`, or `workerJob` when the body is told its
        /// worker); a no-op between passes. Not Optionals: storing a closure
        /// in an Optional reabstracts it through a heap-allocated thunk.
        private var job: (Int, Range<Int>) -> Void = Team.idle
        private var workerJob: (Int, Int, Range<Int>) -> Void = Team.idleWorker
        private var withWorker = false
        private static let idle: (Int, Range<Int>) -> Void = { _, _ in }
        private static let idleWorker: (Int, Int, Range<Int>) -> Void = { _, _, _ in }
        /// Helpers started so far (each takes the next worker number).
        private let started = Atomic<Int>(0)
        private var count = 0, chunkSize = 1, chunks = 0
        /// The next unclaimed chunk of the current pass.
        private let next = Atomic<Int>(0)

        /// Starts `threads − 1` helpers (none for 1 thread). If a helper
        /// cannot be started the team runs with those that did.
        init(threads: Int) {
            requested = threads
            pthread_mutex_init(mutex, nil)
            pthread_cond_init(wake, nil)
            pthread_cond_init(finished, nil)
            if threads > 1 {
                for _ in 1..<threads {
                    var t = pthread_t()
                    let me = Unmanaged.passUnretained(self).toOpaque()
                    // The helper must not retain the team: a strong reference
                    // held for the whole helperLoop would keep deinit (which
                    // stops and joins the helpers) from ever running, leaking
                    // the threads of every run. deinit joins them before the
                    // team's memory goes, so the unretained use is safe.
                    guard pthread_create(&t, nil, { arg in
                        Unmanaged<Team>.fromOpaque(arg!)._withUnsafeGuaranteedRef { $0.helperLoop() }
                        return nil
                    }, me) == 0 else { break }
                    helpers.append(t)
                }
            }
        }

        deinit {
            pthread_mutex_lock(mutex)
            stopping = true
            generation.add(1, ordering: .releasing)
            pthread_cond_broadcast(wake)
            pthread_mutex_unlock(mutex)
            for t in helpers { pthread_join(t, nil) }
            pthread_cond_destroy(wake); pthread_cond_destroy(finished); pthread_mutex_destroy(mutex)
            wake.deallocate(); finished.deallocate(); mutex.deallocate()
        }

        /// `Parallel.forEachChunk(count:chunkSize:threads:_:)` on this team;
        /// `body` is held only during the call.
        func forEachChunk(count: Int, chunkSize: Int, _ body: @escaping (_ chunk: Int, _ range: Range<Int>) -> Void) {
            job = body
            pass(count: count, chunkSize: chunkSize, withWorker: false)
        }

        /// `forEachChunk`, also telling `body` its worker (0 the caller,
        /// 1 ..< `threads` the helpers; no two run at once with the same
        /// number): for per-worker scratch.
        func forEachChunk(count: Int, chunkSize: Int,
                          _ body: @escaping (_ worker: Int, _ chunk: Int, _ range: Range<Int>) -> Void) {
            workerJob = body
            pass(count: count, chunkSize: chunkSize, withWorker: true)
        }

        /// A pass over the chunks of `count` with the body set in `job` or
        /// (`withWorker`) `workerJob`: on the caller alone when there is one
        /// chunk or no helper, else published to the helpers.
        private func pass(count: Int, chunkSize: Int, withWorker: Bool) {
            precondition(chunkSize > 0)
            // The helpers are between passes (polling or parked): nothing
            // reads these until the new generation is published.
            self.count = count; self.chunkSize = chunkSize; self.withWorker = withWorker
            chunks = (count + chunkSize - 1) / chunkSize
            next.store(0, ordering: .relaxed)
            if helpers.isEmpty || chunks <= 1 {
                work(worker: 0)
            } else {
                busyHelpers.store(helpers.count, ordering: .relaxed)
                pthread_mutex_lock(mutex)
                generation.add(1, ordering: .releasing)
                pthread_cond_broadcast(wake)
                pthread_mutex_unlock(mutex)
                work(worker: 0)
                if !pollForHelpers() {
                    pthread_mutex_lock(mutex)
                    while busyHelpers.load(ordering: .acquiring) > 0 { pthread_cond_wait(finished, mutex) }
                    pthread_mutex_unlock(mutex)
                }
            }
            job = Team.idle
            workerJob = Team.idleWorker
        }

        /// Claims and runs chunks of the current pass until none is left.
        private func work(worker: Int) {
            let plain = job, told = workerJob, withWorker = self.withWorker
            while true {
                let c = next.add(1, ordering: .relaxed).oldValue
                if c >= chunks { return }
                let range = (c * chunkSize)..<Swift.min(count, (c + 1) * chunkSize)
                if withWorker { told(worker, c, range) } else { plain(c, range) }
            }
        }

        /// Counts polls and reads the clock every 256 of them: `expired` once
        /// `spinNanoseconds` have passed since the first reading.
        private struct SpinDeadline {
            var spins = 0, start = timespec()
            mutating func expired() -> Bool {
                spins += 1
                guard spins & 255 == 0 else { return false }
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                if spins == 256 { start = now; return false }
                return (now.tv_sec - start.tv_sec) * 1_000_000_000 + (now.tv_nsec - start.tv_nsec) >= Int(spinNanoseconds)
            }
        }

        // The two polls are methods, not closures: a closure capturing self
        // retains it, and a helper's release could then be the team's last
        // (the owner gone meanwhile) and run deinit on the helper itself.

        /// Whether a pass after generation `seen` started within `spinNanoseconds`.
        private func pollForPass(after seen: Int) -> Bool {
            var deadline = SpinDeadline()
            while generation.load(ordering: .acquiring) == seen { if deadline.expired() { return false } }
            return true
        }

        /// Whether every helper finished the pass within `spinNanoseconds`.
        private func pollForHelpers() -> Bool {
            var deadline = SpinDeadline()
            while busyHelpers.load(ordering: .acquiring) > 0 { if deadline.expired() { return false } }
            return true
        }

        /// The name helpers give themselves (ps, top, debuggers; tests count them).
        static let helperName = "flowrt-team"

        private func helperLoop() {
            _ = fr_name_this_thread(Team.helperName)
            let worker = started.add(1, ordering: .relaxed).newValue
            var seen = 0
            while true {
                if !pollForPass(after: seen) {
                    pthread_mutex_lock(mutex)
                    while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(wake, mutex) }
                    pthread_mutex_unlock(mutex)
                }
                seen = generation.load(ordering: .acquiring)
                pthread_mutex_lock(mutex)
                let stop = stopping
                pthread_mutex_unlock(mutex)
                if stop { break }
                // The body stays set until every helper has reported.
                work(worker: worker)
                if busyHelpers.subtract(1, ordering: .releasing).newValue == 0 {
                    pthread_mutex_lock(mutex)
                    pthread_cond_signal(finished)
                    pthread_mutex_unlock(mutex)
                }
            }
        }
    }
}
