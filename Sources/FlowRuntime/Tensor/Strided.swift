/// Strided elementwise kernels with numpy broadcasting, the one loop behind
/// binary ops, their JVPs and VJPs, reductions and broadcasting copies.
///
/// Operands are described by a full shape (same rank for all) and strides in
/// elements; a stride of 0 broadcasts (reads) or reduces (writes with
/// `accumulate`). Summation order is fixed, so results are deterministic.
enum StridedOp {
    case copy           // a
    case neg            // −a
    case add            // a + b
    case sub            // a − b
    case mul            // a · b
    case div            // a / b
    case mulDiv         // a · b / c
    case negMulDiv      // −a · b / c
    case scale(Float)   // s · a
}

struct StridedOperand {
    var pointer: UnsafePointer<Float>
    var strides: [Int]
}

enum Strided {
    /// Row-major strides of `shape` placed right-aligned in a rank-`rank`
    /// iteration space over `outShape`, with 0 where `shape` broadcasts.
    static func strides(of shape: [Int], broadcastTo outShape: [Int]) -> [Int] {
        let rank = outShape.count
        let padded = [Int](repeating: 1, count: rank - shape.count) + shape
        var s = [Int](repeating: 0, count: rank)
        var acc = 1
        for i in stride(from: rank - 1, through: 0, by: -1) {
            s[i] = (padded[i] == 1 && outShape[i] != 1) ? 0 : acc
            acc *= padded[i]
        }
        return s
    }

    /// dst[idx] (= or +=) op(a[idx], b[idx], c[idx]) over every index of `shape`.
    /// Merges adjacent axes that every operand walks contiguously (and drops
    /// extent-1 axes), so that broadcasts such as `[B, C, H, W] + [C, 1, 1]`
    /// run as `[B·C, H·W]` rows with a unit-stride inner loop.
    static func coalesce(_ shape: [Int], _ strides: [[Int]]) -> ([Int], [[Int]]) {
        var shp: [Int] = [], st: [[Int]] = strides.map { _ in [] }
        for axis in shape.indices where shape[axis] != 1 {
            if let last = shp.indices.last,
               strides.indices.allSatisfy({ st[$0][last] == strides[$0][axis] * shape[axis] }) {
                shp[last] *= shape[axis]
                for k in strides.indices { st[k][last] = strides[k][axis] }
            } else {
                shp.append(shape[axis])
                for k in strides.indices { st[k].append(strides[k][axis]) }
            }
        }
        if shp.isEmpty { return ([1], strides.map { _ in [0] }) }
        return (shp, st)
    }

    /// The unit-stride inner loops of the common cases (b, c absent, unit
    /// stride, or broadcast; a broadcast, b unit stride: a scalar times a
    /// tensor, as in the exporters' GELU-tanh expansion); false when
    /// `apply`'s general loop must run.
    @inline(__always)
    private static func contiguousRow(_ op: StridedOp, _ d: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                      _ y: UnsafePointer<Float>, aStride: Int, bStride: Int, count n: Int,
                                      accumulate: Bool) -> Bool {
        if aStride == 0 {
            guard bStride == 1, !accumulate else { return false }
            let v = x[0]
            switch op {
            case .add: for i in 0..<n { d[i] = v + y[i] }
            case .sub: for i in 0..<n { d[i] = v - y[i] }
            case .mul: for i in 0..<n { d[i] = v * y[i] }
            case .div: for i in 0..<n { d[i] = v / y[i] }
            default: return false
            }
            return true
        }
        switch (op, bStride, accumulate) {
        case (.copy, _, false): d.update(from: x, count: n)
        case (.copy, _, true): for i in 0..<n { d[i] += x[i] }
        case (.scale(let s), _, false): for i in 0..<n { d[i] = s * x[i] }
        case (.scale(let s), _, true): for i in 0..<n { d[i] += s * x[i] }
        case (.add, 1, false): for i in 0..<n { d[i] = x[i] + y[i] }
        case (.add, 0, false): let v = y[0]; for i in 0..<n { d[i] = x[i] + v }
        case (.sub, 1, false): for i in 0..<n { d[i] = x[i] - y[i] }
        case (.sub, 0, false): let v = y[0]; for i in 0..<n { d[i] = x[i] - v }
        case (.mul, 1, false): for i in 0..<n { d[i] = x[i] * y[i] }
        case (.mul, 0, false): let v = y[0]; for i in 0..<n { d[i] = x[i] * v }
        case (.mul, 1, true): for i in 0..<n { d[i] += x[i] * y[i] }
        case (.mul, 0, true): let v = y[0]; for i in 0..<n { d[i] += x[i] * v }
        case (.div, 1, false): for i in 0..<n { d[i] = x[i] / y[i] }
        case (.div, 0, false): let v = y[0]; for i in 0..<n { d[i] = x[i] / v }
        default: return false
        }
        return true
    }

    /// d[0] += Σ_i op(x[i], y[i]) for the reducing ops (copy, neg, scale,
    /// mul), in `Lanes` order.
    private static func reduceRow(_ op: StridedOp, _ d: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                                  _ y: UnsafePointer<Float>, count n: Int) -> Bool {
        switch op {
        case .copy: d[0] += Lanes.sum(x, count: n)
        case .neg: d[0] -= Lanes.sum(x, count: n)
        case .scale(let s): d[0] += s * Lanes.sum(x, count: n)
        case .mul: d[0] += Lanes.dot(x, y, count: n)
        default: return false
        }
        return true
    }

    static func apply(_ op: StridedOp, shape: [Int],
                      dst: UnsafeMutablePointer<Float>, dstStrides: [Int], accumulate: Bool,
                      _ a: StridedOperand, _ b: StridedOperand? = nil, _ c: StridedOperand? = nil) {
        run(op, Loop(shape: shape, dstStrides: dstStrides, a.strides, b?.strides, c?.strides), dst: dst,
            accumulate: accumulate, a.pointer, b?.pointer, c?.pointer)
    }

    /// `apply`'s iteration, coalesced (`coalesce`): made once (it
    /// allocates), run any number of times (`run` does not).
    struct Loop {
        let shape: [Int]
        /// The destination's and a, b, c's strides in `shape` (0s for an absent operand).
        let strides: [[Int]]

        init(shape: [Int], dstStrides: [Int], _ a: [Int], _ b: [Int]?, _ c: [Int]?) {
            let rawShape = shape.isEmpty ? [1] : shape
            func st(_ s: [Int]) -> [Int] { s.isEmpty ? [0] : s }
            let zeros = [Int](repeating: 0, count: rawShape.count)
            (self.shape, strides) = coalesce(rawShape, [st(dstStrides), st(a), b.map(st) ?? zeros, c.map(st) ?? zeros])
        }
    }

    /// `apply` over a prepared loop; b and c nil where the op does not read them.
    static func run(_ op: StridedOp, _ loop: Loop, dst: UnsafeMutablePointer<Float>, accumulate: Bool,
                    _ pa: UnsafePointer<Float>, _ b: UnsafePointer<Float>?, _ c: UnsafePointer<Float>?) {
        let shp = loop.shape, rank = shp.count
        let ds = loop.strides[0], as_ = loop.strides[1], bs = loop.strides[2], cs = loop.strides[3]
        let pb = b ?? pa, pc = c ?? pa
        let inner = shp[rank - 1]
        let di = ds[rank - 1], ai = as_[rank - 1], bi = bs[rank - 1], ci = cs[rank - 1]
        let outer = shp.dropLast().reduce(1, *)
        if outer == 0 || inner == 0 { return }
        let unit = di == 1 && c == nil && (ai == 1 && (bi == 0 || bi == 1) || ai == 0 && bi == 1 && b != nil)
        // A row summed into one destination element (the gradient of a
        // broadcast operand, e.g. a per-channel scale or shift over H·W).
        let reducing = di == 0 && accumulate && c == nil && ai == 1 && (b == nil || bi == 1)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: Swift.max(rank - 1, 1)) { index in
            index.initialize(repeating: 0)
            var od = 0, oa = 0, ob = 0, oc = 0
            for _ in 0..<outer {
                let d = dst + od, x = pa + oa, y = pb + ob, z = pc + oc
                if unit && contiguousRow(op, d, x, y, aStride: ai, bStride: bi, count: inner, accumulate: accumulate) {
                    // done by the unit-stride loop
                } else if reducing && reduceRow(op, d, x, y, count: inner) {
                    // done by the vectorised reduction
                } else {
                switch op {
                case .copy:
                    if accumulate { for i in 0..<inner { d[i * di] += x[i * ai] } }
                    else { for i in 0..<inner { d[i * di] = x[i * ai] } }
                case .neg:
                    if accumulate { for i in 0..<inner { d[i * di] -= x[i * ai] } }
                    else { for i in 0..<inner { d[i * di] = -x[i * ai] } }
                case .scale(let s):
                    if accumulate { for i in 0..<inner { d[i * di] += s * x[i * ai] } }
                    else { for i in 0..<inner { d[i * di] = s * x[i * ai] } }
                case .add:
                    if accumulate { for i in 0..<inner { d[i * di] += x[i * ai] + y[i * bi] } }
                    else { for i in 0..<inner { d[i * di] = x[i * ai] + y[i * bi] } }
                case .sub:
                    if accumulate { for i in 0..<inner { d[i * di] += x[i * ai] - y[i * bi] } }
                    else { for i in 0..<inner { d[i * di] = x[i * ai] - y[i * bi] } }
                case .mul:
                    if accumulate { for i in 0..<inner { d[i * di] += x[i * ai] * y[i * bi] } }
                    else { for i in 0..<inner { d[i * di] = x[i * ai] * y[i * bi] } }
                case .div:
                    if accumulate { for i in 0..<inner { d[i * di] += x[i * ai] / y[i * bi] } }
                    else { for i in 0..<inner { d[i * di] = x[i * ai] / y[i * bi] } }
                case .mulDiv:
                    if accumulate { for i in 0..<inner { d[i * di] += x[i * ai] * y[i * bi] / z[i * ci] } }
                    else { for i in 0..<inner { d[i * di] = x[i * ai] * y[i * bi] / z[i * ci] } }
                case .negMulDiv:
                    if accumulate { for i in 0..<inner { d[i * di] -= x[i * ai] * y[i * bi] / z[i * ci] } }
                    else { for i in 0..<inner { d[i * di] = -(x[i * ai] * y[i * bi] / z[i * ci]) } }
                }
                }
                // Advance the outer multi-index (odometer), updating offsets.
                var axis = rank - 2
                while axis >= 0 {
                    index[axis] += 1
                    od += ds[axis]; oa += as_[axis]; ob += bs[axis]; oc += cs[axis]
                    if index[axis] < shp[axis] { break }
                    od -= ds[axis] * shp[axis]; oa -= as_[axis] * shp[axis]
                    ob -= bs[axis] * shp[axis]; oc -= cs[axis] * shp[axis]
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }
}
