import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Deterministic data parallelism over fixed chunks.
///
/// Work 0..<count is cut into chunks of `chunkSize` (the last may be short)
/// *independently of the thread count*, and each chunk is computed by exactly
/// one thread with its own scratch memory, so results are bit-identical for
/// any number of threads. Reductions over chunks must be combined by the
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
    /// up to `threads` threads (thread j takes chunks j, j + threads, …).
    /// `body` must only write memory belonging to its range or chunk.
    public static func forEachChunk(count: Int, chunkSize: Int, threads: Int,
                                    _ body: (_ chunk: Int, _ range: Range<Int>) -> Void) {
        precondition(chunkSize > 0)
        let chunks = (count + chunkSize - 1) / chunkSize
        if chunks == 0 { return }
        let workers = Swift.max(1, Swift.min(threads, chunks))
        func run(_ w: Int) {
            var c = w
            while c < chunks {
                body(c, (c * chunkSize)..<Swift.min(count, (c + 1) * chunkSize))
                c += workers
            }
        }
        if workers == 1 { run(0); return }
        withoutActuallyEscaping(body) { _ in
            DispatchQueue.concurrentPerform(iterations: workers) { run($0) }
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
