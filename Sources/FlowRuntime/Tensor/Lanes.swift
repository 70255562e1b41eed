/// Sums and dot products of contiguous float rows in 16 lanes of float32
/// (one AVX-512 register), folded at the end: vectorised where a scalar
/// `+=` loop is a serial dependency chain. The summation order depends on
/// n only, never on batching or threads.
enum Lanes {
    private typealias V = SIMD16<Float>

    /// Σ x[i], i < n.
    static func sum(_ x: UnsafePointer<Float>, count n: Int) -> Float {
        var acc = V(), i = 0
        let rx = UnsafeRawPointer(x)
        while i + 16 <= n { acc += rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self); i += 16 }
        var s = acc.sum()
        while i < n { s += x[i]; i += 1 }
        return s
    }

    /// Σ x[i] y[i], i < n.
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) -> Float {
        var acc = V(), i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeRawPointer(y)
        while i + 16 <= n {
            acc += rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * ry.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
            i += 16
        }
        var s = acc.sum()
        while i < n { s += x[i] * y[i]; i += 1 }
        return s
    }
}
