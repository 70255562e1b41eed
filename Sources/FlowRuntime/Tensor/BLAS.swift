import CBLAS
import CKernels

/// Thin wrappers over CBLAS, the only place FlowRuntime calls BLAS.
///
/// All matrices are row-major and dense; `lda` etc. equal the row length.
/// BLAS runs single-threaded: FlowRuntime parallelises over batch chunks
/// itself so that results do not depend on the thread count.
enum BLAS {
    /// Makes OpenBLAS single-threaded. Called once when the first model is
    /// built; documented in flowrt.h as the library's one process-wide effect.
    static let configured: Bool = {
        openblas_set_num_threads(1)
        return true
    }()

    /// Row counts up to which `fr_gemm_small` beats OpenBLAS's SGEMM on
    /// 256-wide layers here (measured: 3-6x faster for m = 8..32, slower at 64).
    static let smallRows = 32

    /// C[m×n] = alpha · op(A) · op(B) + beta · C, row-major.
    /// `transA`: A is stored [k×m] and used transposed; likewise `transB`
    /// (B stored [n×k]).
    @inline(__always)
    static func gemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        beta: Float = 0, c: UnsafeMutablePointer<Float>
    ) {
        _ = configured
        if m == 0 || n == 0 { return }
        if k == 0 {
            // BLAS leaves C untouched when k == 0; make the contract explicit.
            if beta == 0 { c.update(repeating: 0, count: m * n) }
            else if beta != 1 { for i in 0..<(m * n) { c[i] *= beta } }
            return
        }
        if transB && alpha == 1 && beta == 0 && m <= smallRows {
            // Small batches: our kernel keeps each block of W rows in L1 while
            // the rows of A pass over it (OpenBLAS repacks W on every call).
            fr_gemm_small(a, b, nil, c, m, n, k)
            return
        }
        if m == 1 {
            // (With m == 1, A is a contiguous k-vector whether or not it is
            // stored transposed.) SGEMV reads B once and skips SGEMM's packing.
            if transB {  // c[n] = alpha · B[n×k] · a + beta · c
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), alpha, b, Int32(k), a, 1, beta, c, 1)
            } else {     // c[n] = alpha · B[k×n]ᵀ · a + beta · c
                cblas_sgemv(CblasRowMajor, CblasTrans, Int32(k), Int32(n), alpha, b, Int32(n), a, 1, beta, c, 1)
            }
            return
        }
        cblas_sgemm(
            CblasRowMajor,
            transA ? CblasTrans : CblasNoTrans,
            transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha,
            a, Int32(transA ? m : k),
            b, Int32(transB ? k : n),
            beta, c, Int32(n))
    }
}
