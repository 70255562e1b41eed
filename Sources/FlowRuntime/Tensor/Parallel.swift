import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Deterministic data parallelism over fixed chunks.
///
/// Work 0..<count is cut into chunks of `chunkSize` (the last may be short)
/// *independently of the thread count*, and each chunk is computed by exactly
/// one thread with its own scratch memory (per chunk, never per thread), so
/// results are bit-identical for any number of threads. Reductions over chunks must be combined by the
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
        precondition(chunkSize > 0)
        let chunks = (count + chunkSize - 1) / chunkSize
        if chunks == 0 { return }
        let workers = Swift.max(1, Swift.min(threads, chunks))
        func range(_ c: Int) -> Range<Int> { (c * chunkSize)..<Swift.min(count, (c + 1) * chunkSize) }
        if workers == 1 {
            for c in 0..<chunks { body(c, range(c)) }
            return
        }
        let next = _ChunkCounter()
        withoutActuallyEscaping(body) { _ in
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                while true {
                    let c = next.claim()
                    if c >= chunks { return }
                    body(c, range(c))
                }
            }
        }
    }
}

/// The next unclaimed chunk of one `forEachChunk` call (a fetch-and-add).
final class _ChunkCounter: @unchecked Sendable {
    private let value = Atomic<Int>(0)
    /// Returns the current value and advances it.
    func claim() -> Int { value.add(1, ordering: .relaxed).oldValue }
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
