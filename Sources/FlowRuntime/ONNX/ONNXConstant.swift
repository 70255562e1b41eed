/// Values the importer knows at load time.
///
/// ONNX velocity networks compute shapes at run time (`Shape` → `Gather` →
/// `Concat` → `Expand`); the importer evaluates those chains once, with the
/// batch size kept symbolic, so the executed graph only holds float math.

/// An integer known at import, the (symbolic) batch size, or the batch
/// size times k ≥ 2 (`bs * n_heads` in a head-folding attention).
enum SymbolicInt: Equatable, CustomStringConvertible {
    case known(Int64)
    case batch
    case batchTimes(Int64)

    var value: Int64? { if case .known(let v) = self { return v } else { return nil } }
    var description: String {
        switch self {
        case .known(let v): return "\(v)"
        case .batch: return "batch"
        case .batchTimes(let k): return "batch×\(k)"
        }
    }
    /// batch × k as a symbol (k = 1: the batch itself).
    static func batch(times k: Int64) -> SymbolicInt { k == 1 ? .batch : .batchTimes(k) }
    /// The factor of the batch size: 1 for `.batch`, k for `.batchTimes(k)`.
    var batchFactor: Int64? {
        switch self {
        case .known: return nil
        case .batch: return 1
        case .batchTimes(let k): return k
        }
    }
}

/// An integer or boolean tensor known at import (shapes, axes, masks).
struct IntConstant {
    var shape: [Int]
    var values: [SymbolicInt]

    /// The values when none is the batch symbol.
    var knownValues: [Int64]? {
        var out = [Int64]()
        out.reserveCapacity(values.count)
        for v in values { guard let k = v.value else { return nil }; out.append(k) }
        return out
    }
}

/// Largest tensor (elements) the importer creates by folding (ConstantOfShape,
/// Expand, Where, broadcasts, …) unless an input of the fold is already that
/// large: beyond it the model is rejected rather than allocated, so a few
/// bytes of file cannot ask for gigabytes.
let foldedElementLimit = 1 << 20

/// The element count of `shape`, checked against overflow and `limit`.
/// - Throws: `.invalidModel` naming `what`.
func checkedCount(_ shape: [Int], limit: Int = foldedElementLimit, _ what: @autoclosure () -> String) throws -> Int {
    guard let n = shape.checkedElementCount, n <= limit else {
        throw FlowError.invalidModel("\(what()): shape \(shape) has too many elements (limit \(limit))")
    }
    return n
}

/// numpy broadcasting of constant tensors, element by element.
enum ConstantBroadcast {
    /// The broadcast shape and, for each output element, the flat index in
    /// each input.
    static func indices(_ shapes: [[Int]], node: String) throws -> (shape: [Int], map: [[Int]]) {
        var out: [Int] = []
        for s in shapes {
            guard let b = ShapeInference.broadcast(out, s) else {
                throw FlowError.shapeMismatch("node '\(node)': shapes \(shapes) do not broadcast")
            }
            out = b
        }
        let largest = shapes.map { $0.checkedElementCount ?? 0 }.max() ?? 0
        let n = try checkedCount(out, limit: Swift.max(foldedElementLimit, largest), "node '\(node)'")
        let r = out.count
        var maps = [[Int]](repeating: [], count: shapes.count)
        for (k, s) in shapes.enumerated() {
            let padded = [Int](repeating: 1, count: r - s.count) + s
            var strides = [Int](repeating: 0, count: r)
            var acc = 1
            for i in stride(from: r - 1, through: 0, by: -1) {
                strides[i] = padded[i] == 1 ? 0 : acc
                acc *= padded[i]
            }
            var map = [Int](repeating: 0, count: n)
            var index = [Int](repeating: 0, count: r)
            for e in 0..<n {
                var flat = 0
                for i in 0..<r { flat += index[i] * strides[i] }
                map[e] = flat
                var i = r - 1
                while i >= 0 { index[i] += 1; if index[i] < out[i] { break }; index[i] = 0; i -= 1 }
            }
            maps[k] = map
        }
        return (out, maps)
    }
}
