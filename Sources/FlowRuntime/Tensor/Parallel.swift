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
    /// rounds between progress reports, SDE slices): the calling thread plus
    /// `threads − 1` helper threads started with the team and stopped when
    /// it is released. `forEachChunk` on a team claims chunks exactly like
    /// `Parallel.forEachChunk` (results never depend on the thread count) but
    /// allocates nothing per pass — libdispatch's `concurrentPerform`
    /// allocates a few blocks per call — and wakes parked threads instead of
    /// a pool's. Passes run one at a time, from the thread that made the team.
    /// The body is an escaping closure so that a run makes it once and
    /// passes the same one to every pass (a non-escaping closure handed to
    /// other threads needs `withoutActuallyEscaping`, which allocates).
    final class Team: @unchecked Sendable {
        private var helpers: [pthread_t] = []
        /// Threads running a pass: the caller and the helpers that started.
        var threads: Int { helpers.count + 1 }
        private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        private let finished = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        // Guarded by `mutex`.
        private var generation = 0, busyHelpers = 0, stopping = false
        /// The pass's body; a no-op between passes. Not an Optional: storing
        /// a closure in an Optional reabstracts it through a heap-allocated thunk.
        private var job: (Int, Range<Int>) -> Void = Team.idle
        private static let idle: (Int, Range<Int>) -> Void = { _, _ in }
        private var count = 0, chunkSize = 1, chunks = 0
        /// The next unclaimed chunk of the current pass.
        private let next = Atomic<Int>(0)

        /// Starts `threads − 1` helpers (none for 1 thread). If a helper
        /// cannot be started the team runs with those that did.
        init(threads: Int) {
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
            pthread_cond_broadcast(wake)
            pthread_mutex_unlock(mutex)
            for t in helpers { pthread_join(t, nil) }
            pthread_cond_destroy(wake); pthread_cond_destroy(finished); pthread_mutex_destroy(mutex)
            wake.deallocate(); finished.deallocate(); mutex.deallocate()
        }

        /// `Parallel.forEachChunk(count:chunkSize:threads:_:)` on this team;
        /// `body` is held only during the call.
        func forEachChunk(count: Int, chunkSize: Int, _ body: @escaping (_ chunk: Int, _ range: Range<Int>) -> Void) {
            precondition(chunkSize > 0)
            let chunks = (count + chunkSize - 1) / chunkSize
            if chunks == 0 { return }
            if helpers.isEmpty || chunks == 1 {
                for c in 0..<chunks { body(c, (c * chunkSize)..<Swift.min(count, (c + 1) * chunkSize)) }
                return
            }
            pthread_mutex_lock(mutex)
            job = body
            self.count = count; self.chunkSize = chunkSize; self.chunks = chunks
            next.store(0, ordering: .relaxed)
            busyHelpers = helpers.count
            generation &+= 1
            pthread_cond_broadcast(wake)
            pthread_mutex_unlock(mutex)
            work(body)
            pthread_mutex_lock(mutex)
            while busyHelpers > 0 { pthread_cond_wait(finished, mutex) }
            job = Team.idle
            pthread_mutex_unlock(mutex)
        }

        /// Claims and runs chunks of the current pass until none is left.
        private func work(_ body: (Int, Range<Int>) -> Void) {
            while true {
                let c = next.add(1, ordering: .relaxed).oldValue
                if c >= chunks { return }
                body(c, (c * chunkSize)..<Swift.min(count, (c + 1) * chunkSize))
            }
        }

        private func helperLoop() {
            var seen = 0
            pthread_mutex_lock(mutex)
            while true {
                while generation == seen && !stopping { pthread_cond_wait(wake, mutex) }
                if stopping { break }
                seen = generation
                pthread_mutex_unlock(mutex)
                // `job` stays set until every helper has reported.
                work(job)
                pthread_mutex_lock(mutex)
                busyHelpers -= 1
                if busyHelpers == 0 { pthread_cond_signal(finished) }
            }
            pthread_mutex_unlock(mutex)
        }
    }
}
