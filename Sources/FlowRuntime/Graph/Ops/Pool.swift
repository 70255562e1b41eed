/// Pooling over the spatial axes of per-sample `[C, spatial…]` values
/// (`[C, L]`, `[C, H, W]`, `[C, D, H, W]`, …): ONNX AveragePool, MaxPool,
/// GlobalAveragePool and GlobalMaxPool, each channel on its own.
///
/// On spatial axis a (extent n), output index o has the taps
/// i = o·s − pb + j·d, j = 0 ..< k (kernel k, stride s, dilation d, padding
/// pb before and pe after); taps outside [0, n) are padding. A window is the
/// product of its axes' taps, in row-major order (last axis fastest).
/// Output extent: ⌊(n + pb + pe − ((k − 1)·d + 1)) / s⌋ + 1, or with
/// `ceilMode` the ceiling, less one when that last window would start at or
/// past n + pb (ONNX's, onnxruntime's and PyTorch's rule: the last window
/// starts inside the input or the left padding).
///
/// - average: y = (Σ x over the in-bounds taps) / count, count = the taps
///   inside the padded extent [−pb, n + pe) with `countIncludePad` (the
///   divisor of PyTorch and onnxruntime: a ceil-mode window's part past the
///   end padding is not counted), else the in-bounds taps only. Linear in x:
///   JVP the same op on the tangents; VJP g_x[i] += g / count for each tap.
/// - max: y = the largest in-bounds tap, the first in window order among
///   equal ones; padding never wins, a NaN wins (the first NaN). A recorded
///   pass keeps each output's argmax (Int32 in `OpContext.aux`, from the same
///   loop as inference, so both give the same values bit for bit):
///   JVP ẏ = ẋ[argmax], VJP g_x[argmax] += g.
///
/// Refused by the shape rule: a window without an in-bounds tap (pads as
/// wide as the window, or a dilation stepping over the whole input), and
/// an average with dilations (opset 19's attribute: exported files are
/// opset 17, which has no form of it, and PyTorch's avg_pool has none).
/// - Complexity: one pass over the window taps per output element; the
///   windows (tap offsets, divisors) are built once per workspace.
struct PoolOp: GraphOp {
    enum Kind: String, Sendable { case average = "AveragePool", max = "MaxPool" }
    var kind: Kind
    var kernel: [Int], strides: [Int]
    /// Per spatial axis, the padding before (`padsBegin`) and after.
    var padsBegin: [Int], padsEnd: [Int]
    var dilations: [Int]
    var ceilMode: Bool
    /// Average only: divide by the taps inside the padded extent rather than the in-bounds ones.
    var countIncludePad: Bool
    /// Imported from GlobalAveragePool / GlobalMaxPool (the kernel is the
    /// input's spatial extent, strides 1, no pads): exported as such.
    var global: Bool

    var kindName: String { global ? "Global" + kind.rawValue : kind.rawValue }
    var spatialRank: Int { kernel.count }

    /// The output extent for input extent `n` on spatial axis `a` (0 when the window does not fit).
    func outputExtent(_ n: Int, axis a: Int) -> Int {
        let room = n + padsBegin[a] + padsEnd[a] - (dilations[a] * (kernel[a] - 1) + 1)
        guard room >= 0 else { return 0 }
        var out = (ceilMode ? room + strides[a] - 1 : room) / strides[a] + 1
        if ceilMode && (out - 1) * strides[a] >= n + padsBegin[a] { out -= 1 }
        return out
    }

    /// On spatial axis `a` of extent `n`, output index `o`'s in-bounds taps
    /// and the number of its taps inside the padded extent.
    func axisWindow(_ o: Int, extent n: Int, axis a: Int) -> (inside: [Int], padded: Int) {
        let start = o * strides[a] - padsBegin[a]
        var inside: [Int] = [], padded = 0
        for j in 0..<kernel[a] {
            let i = start + j * dilations[a]
            if i >= 0 && i < n { inside.append(i) }
            if i >= -padsBegin[a] && i < n + padsEnd[a] { padded += 1 }
        }
        return (inside, padded)
    }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1, inputs[0].isBatched else {
            throw FlowError.unsupported("node '\(node)': \(kindName) needs one batched input")
        }
        let x = inputs[0].shape, r = spatialRank
        guard r >= 1, x.count == r + 1, strides.count == r, padsBegin.count == r, padsEnd.count == r, dilations.count == r,
              kernel.allSatisfy({ $0 >= 1 }), strides.allSatisfy({ $0 >= 1 }), dilations.allSatisfy({ $0 >= 1 }),
              padsBegin.allSatisfy({ $0 >= 0 }), padsEnd.allSatisfy({ $0 >= 0 }) else {
            throw FlowError.shapeMismatch("node '\(node)': \(kindName) with kernel \(kernel), strides \(strides), pads \(padsBegin + padsEnd), dilations \(dilations) for input \(x)")
        }
        guard kind == .max || dilations.allSatisfy({ $0 == 1 }) else {
            throw FlowError.unsupported("node '\(node)': AveragePool with dilations \(dilations) (opset 19) has no opset-\(Model.onnxExportOpset) export")
        }
        let out = (0..<r).map { outputExtent(x[$0 + 1], axis: $0) }
        guard out.allSatisfy({ $0 >= 1 }) else {
            throw FlowError.shapeMismatch("node '\(node)': \(kindName) output \(out) is empty for input \(x) (kernel \(kernel), dilations \(dilations), pads \(padsBegin + padsEnd))")
        }
        // Windows are products of per-axis taps: empty iff empty on an axis.
        var taps = 1
        for a in 0..<r {
            var axisTaps = 0
            for o in 0..<out[a] {
                let w = axisWindow(o, extent: x[a + 1], axis: a).inside.count
                guard w > 0 else {
                    throw FlowError.unsupported("node '\(node)': \(kindName) window \(o) on spatial axis \(a) covers only padding (input \(x), kernel \(kernel), pads \(padsBegin + padsEnd), dilations \(dilations))")
                }
                axisTaps += w
            }
            taps = taps.multipliedReportingOverflow(by: axisTaps).overflow ? Int.max : taps * axisTaps
        }
        guard taps <= 1 << 28, x.checkedElementCount.map({ $0 < Int(Int32.max) }) == true else {
            throw FlowError.outOfMemory("node '\(node)': \(kindName) of input \(x) with kernel \(kernel) has too many window taps")
        }
        return [x[0]] + out
    }

    func flops(_ inputs: [Graph.Value], output: Graph.Value) -> Int {
        output.shape.elementCount * kernel.reduce(1, *)
    }

    private func windows(_ c: OpContext) -> PoolWindows {
        c.staticPlan { PoolWindows(self, input: c.shape(0), output: c.outputShape) }
    }

    func forward(_ c: OpContext) {
        let w = windows(c), rows = c.batch * c.outputShape[0]
        switch kind {
        case .average:
            Self.average(w, c.input(0), c.out, rows: rows)
        case .max:
            guard c.record else { Self.maxima(w, c.input(0), c.out, rows: rows, argmax: nil); return }
            let count = rows * w.outSpatial
            c.aux(count).withMemoryRebound(to: Int32.self, capacity: count) {
                Self.maxima(w, c.input(0), c.out, rows: rows, argmax: $0)
            }
        }
    }

    func jvp(_ c: OpContext) {
        let w = windows(c), channels = c.outputShape[0], rows = c.batch * c.k * channels
        switch kind {
        case .average:
            Self.average(w, c.tangent(0)!, c.out, rows: rows)
        case .max:
            // Tangent row (sample, j, channel) reads the argmax of row (sample, channel).
            let count = c.batch * channels * w.outSpatial, k = c.k
            let x = c.tangent(0)!, y = c.out, inS = w.inSpatial, outS = w.outSpatial
            c.recorded.withMemoryRebound(to: Int32.self, capacity: count) { idx in
                for r in 0..<rows {
                    let a = idx + (r / (k * channels) * channels + r % channels) * outS
                    let src = x + r * inS, dst = y + r * outS
                    for p in 0..<outS { dst[p] = src[Int(a[p])] }
                }
            }
        }
    }

    func vjp(_ c: OpContext) {
        guard let gx = c.gradient(0) else { return }
        let w = windows(c), rows = c.batch * c.outputShape[0], g = c.out, inS = w.inSpatial, outS = w.outSpatial
        switch kind {
        case .average:
            w.start.withUnsafeBufferPointer { sp in w.taps.withUnsafeBufferPointer { tp in w.divisor.withUnsafeBufferPointer { dp in
                for r in 0..<rows {
                    let src = g + r * outS, dst = gx + r * inS
                    for p in 0..<outS {
                        let share = src[p] / dp[p]
                        for j in Int(sp[p])..<Int(sp[p + 1]) { dst[Int(tp[j])] += share }
                    }
                }
            } } }
        case .max:
            c.recorded.withMemoryRebound(to: Int32.self, capacity: rows * outS) { idx in
                for r in 0..<rows {
                    let a = idx + r * outS, src = g + r * outS, dst = gx + r * inS
                    for p in 0..<outS { dst[Int(a[p])] += src[p] }
                }
            }
        }
    }

    /// y[r, p] = Σ x[r, taps of p] / divisor[p] for `rows` channel rows.
    private static func average(_ w: PoolWindows, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int) {
        let inS = w.inSpatial, outS = w.outSpatial
        w.start.withUnsafeBufferPointer { sp in w.taps.withUnsafeBufferPointer { tp in w.divisor.withUnsafeBufferPointer { dp in
            for r in 0..<rows {
                let src = x + r * inS, dst = y + r * outS
                for p in 0..<outS {
                    var sum: Float = 0
                    for j in Int(sp[p])..<Int(sp[p + 1]) { sum += src[Int(tp[j])] }
                    dst[p] = sum / dp[p]
                }
            }
        } } }
    }

    /// y[r, p] = max x[r, taps of p] (first among equal ones, a NaN wins),
    /// with its spatial index into `argmax` when given. One loop for both
    /// passes, so recorded and inference values agree bit for bit.
    private static func maxima(_ w: PoolWindows, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int,
                               argmax: UnsafeMutablePointer<Int32>?) {
        let inS = w.inSpatial, outS = w.outSpatial
        w.start.withUnsafeBufferPointer { sp in w.taps.withUnsafeBufferPointer { tp in
            for r in 0..<rows {
                let src = x + r * inS, dst = y + r * outS
                for p in 0..<outS {
                    var best = Int(sp[p]), m = src[Int(tp[best])]
                    for j in (best + 1)..<Int(sp[p + 1]) {
                        let v = src[Int(tp[j])]
                        if v > m || (v.isNaN && !m.isNaN) { m = v; best = j }
                    }
                    dst[p] = m
                    argmax?[r * outS + p] = tp[best]
                }
            }
        } }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let x = e.name(n.inputs[0]), y = e.name(n.output)
        if global {
            e.node(kindName, [x], y)
            return
        }
        var attributes: [String: ONNXProtoModel.Attribute] = [
            "kernel_shape": .ints(kernel.map(Int64.init)), "strides": .ints(strides.map(Int64.init)),
            "pads": .ints((padsBegin + padsEnd).map(Int64.init)), "ceil_mode": .int(ceilMode ? 1 : 0),
        ]
        switch kind {
        case .average:
            attributes["count_include_pad"] = .int(countIncludePad ? 1 : 0)
        case .max:
            attributes["dilations"] = .ints(dilations.map(Int64.init))
            attributes["storage_order"] = .int(0)
        }
        e.node(kind.rawValue, [x], y, attributes)
    }

    static var onnxImports: [String: ONNXImportRule] {
        let rule: ONNXImportRule = { i, n, _ in try i.pool(n) }
        return ["AveragePool": rule, "MaxPool": rule, "GlobalAveragePool": rule, "GlobalMaxPool": rule]
    }
}

/// The windows of a pooling node for its static shapes (one channel):
/// output position p reads spatial input offsets `taps[start[p] ..< start[p + 1]]`
/// in window order; an average divides by `divisor[p]`.
final class PoolWindows {
    let inSpatial: Int, outSpatial: Int
    let start: [Int32]
    let taps: [Int32]
    let divisor: [Float]

    init(_ op: PoolOp, input x: [Int], output y: [Int]) {
        let r = op.spatialRank
        let inExtent = Array(x.dropFirst()), outExtent = Array(y.dropFirst())
        inSpatial = inExtent.elementCount
        outSpatial = outExtent.elementCount
        let inStrides = (0..<r).map { inExtent[($0 + 1)...].reduce(1, *) }
        let axes = (0..<r).map { a in (0..<outExtent[a]).map { op.axisWindow($0, extent: inExtent[a], axis: a) } }
        var start: [Int32] = [0], taps: [Int32] = [], divisor: [Float] = []
        start.reserveCapacity(outSpatial + 1)
        divisor.reserveCapacity(outSpatial)
        var o = [Int](repeating: 0, count: r)
        for _ in 0..<outSpatial {
            let windows = (0..<r).map { axes[$0][o[$0]] }
            // The window's taps in row-major order: an odometer over the axes' in-bounds taps.
            var j = [Int](repeating: 0, count: r)
            outer: while true {
                var flat = 0
                for a in 0..<r { flat += windows[a].inside[j[a]] * inStrides[a] }
                taps.append(Int32(flat))
                var a = r - 1
                while a >= 0 {
                    j[a] += 1
                    if j[a] < windows[a].inside.count { continue outer }
                    j[a] = 0; a -= 1
                }
                break
            }
            start.append(Int32(taps.count))
            let count = windows.reduce(1) { $0 * (op.countIncludePad ? $1.padded : $1.inside.count) }
            divisor.append(Float(count))
            var a = r - 1
            while a >= 0 { o[a] += 1; if o[a] < outExtent[a] { break }; o[a] = 0; a -= 1 }
        }
        (self.start, self.taps, self.divisor) = (start, taps, divisor)
    }
}

extension Operation {
    /// Average pooling over the spatial axes of `[C, spatial…]`; see `PoolOp`.
    public static func averagePool(kernel: [Int], strides: [Int], padsBegin: [Int], padsEnd: [Int],
                                   ceilMode: Bool = false, countIncludePad: Bool) -> Operation {
        Operation(PoolOp(kind: .average, kernel: kernel, strides: strides, padsBegin: padsBegin, padsEnd: padsEnd,
                         dilations: kernel.map { _ in 1 }, ceilMode: ceilMode, countIncludePad: countIncludePad,
                         global: false))
    }

    /// Max pooling over the spatial axes of `[C, spatial…]`; see `PoolOp`.
    public static func maxPool(kernel: [Int], strides: [Int], padsBegin: [Int], padsEnd: [Int],
                               dilations: [Int]? = nil, ceilMode: Bool = false) -> Operation {
        Operation(PoolOp(kind: .max, kernel: kernel, strides: strides, padsBegin: padsBegin, padsEnd: padsEnd,
                         dilations: dilations ?? kernel.map { _ in 1 }, ceilMode: ceilMode, countIncludePad: false,
                         global: false))
    }

    /// Average (`max` false) or max over the whole spatial extent `spatial`
    /// of `[C, spatial…]`, giving `[C, 1, …]`; see `PoolOp`.
    public static func globalPool(max: Bool, spatial: [Int]) -> Operation {
        Operation(PoolOp(kind: max ? .max : .average, kernel: spatial, strides: spatial.map { _ in 1 },
                         padsBegin: spatial.map { _ in 0 }, padsEnd: spatial.map { _ in 0 },
                         dilations: spatial.map { _ in 1 }, ceilMode: false, countIncludePad: false, global: true))
    }
}

// MARK: ONNX import

extension ONNXImporter {
    /// AveragePool, MaxPool, GlobalAveragePool, GlobalMaxPool of a batched
    /// `[C, spatial…]` value. auto_pad resolves to explicit pads (ceil_mode
    /// then plays no part, as in onnxruntime). Refused: MaxPool's
    /// storage_order 1 and a read Indices output (no index tensors in the
    /// IR); AveragePool's dilations other than 1 (opset 19, no opset-17 export).
    mutating func pool(_ n: Node) throws {
        guard case .batched(let x, true) = try input(n, 0) else {
            throw unsupported(n, "input X must be a batched value [batch, C, ...]")
        }
        let shape = builder.shape(of: x)
        let rank = shape.count - 1
        guard rank >= 1 else { throw unsupported(n, "input of per-sample shape \(shape): pooling needs [C, spatial…]") }
        let isMax = n.opType.hasSuffix("MaxPool")
        if isMax {
            if try int(n, "storage_order", 0) != 0 { throw unsupported(n, "storage_order 1 (column-major Indices); only 0") }
            for o in n.outputs.dropFirst() where !o.isEmpty && !(readers[o]?.isEmpty ?? true) {
                throw unsupported(n, "output '\(o)' (Indices) is read; only the pooled values Y are")
            }
        }
        let op: Operation
        if n.opType.hasPrefix("Global") {
            op = .globalPool(max: isMax, spatial: Array(shape.dropFirst()))
        } else {
            var a = try convAttributes(n, rank: rank, weightKernel: nil)
            var ceilMode = try int(n, "ceil_mode", 0)
            let include = isMax ? 0 : try int(n, "count_include_pad", 0)
            guard ceilMode == 0 || ceilMode == 1, include == 0 || include == 1 else {
                throw invalid(n, "ceil_mode \(ceilMode) or count_include_pad \(include) (0 or 1)")
            }
            if !isMax && a.dilations.contains(where: { $0 != 1 }) {
                throw unsupported(n, "dilations \(a.dilations) (opset 19's AveragePool attribute: FlowRuntime exports opset \(Model.onnxExportOpset), which cannot express it)")
            }
            if a.autoPad != "NOTSET" && !a.autoPad.isEmpty {
                try resolveAutoPad(n, &a, spatial: Array(shape.dropFirst()))
                ceilMode = 0
            }
            op = isMax
                ? .maxPool(kernel: a.kernel, strides: a.strides, padsBegin: a.padsBegin, padsEnd: a.padsEnd,
                           dilations: a.dilations, ceilMode: ceilMode == 1)
                : .averagePool(kernel: a.kernel, strides: a.strides, padsBegin: a.padsBegin, padsEnd: a.padsEnd,
                               ceilMode: ceilMode == 1, countIncludePad: include == 1)
        }
        try set(n, .batched(try builder.apply(op, [x], name: currentNode), batchAxis: true))
    }
}
