#if canImport(Glibc)
import Glibc
#endif

/// Resize with mode "nearest" on per-sample axes: output index o on axis d
/// reads input index nearest(transform(o)), with ONNX's coordinate
/// transformation and nearest-rounding modes. Runs as an index map.
/// (Mode "linear": `LinearResizeOp` below.)
struct ResizeOp: IndexMappingOp {
    enum Transform: String, Sendable {
        case halfPixel = "half_pixel", pytorchHalfPixel = "pytorch_half_pixel", alignCorners = "align_corners"
        case asymmetric, tfHalfPixelForNearest = "tf_half_pixel_for_nearest"

        /// The input coordinate of output index `o` on an axis resized from
        /// `n` to `m` elements with scale `s` (ONNX's formulas).
        func source(_ o: Int, from n: Int, to m: Int, scale s: Double) -> Double {
            let x = Double(o)
            switch self {
            case .halfPixel: return (x + 0.5) / s - 0.5
            case .pytorchHalfPixel: return m > 1 ? (x + 0.5) / s - 0.5 : 0
            case .alignCorners: return m > 1 ? x * Double(n - 1) / Double(m - 1) : 0
            case .asymmetric: return x / s
            case .tfHalfPixelForNearest: return (x + 0.5) / s
            }
        }
    }
    enum Rounding: String, Sendable {
        case roundPreferFloor = "round_prefer_floor", roundPreferCeil = "round_prefer_ceil", floor, ceil
    }
    var shape: [Int]
    var scales: [Double]
    var transform: Transform
    var rounding: Rounding
    let map: IndexMap

    init(shape: [Int], scales: [Double], transform: Transform, rounding: Rounding, inputShape: [Int], node: String) throws {
        guard shape.count == inputShape.count, scales.count == shape.count, shape.allSatisfy({ $0 > 0 }) else {
            throw FlowError.shapeMismatch("node '\(node)': resize \(inputShape) to \(shape)")
        }
        (self.shape, self.scales, self.transform, self.rounding) = (shape, scales, transform, rounding)
        map = try IndexMap.build(outShape: shape, inShape: inputShape, node: node) { o in
            (0..<o.count).map { d in
                let n = inputShape[d]
                let c = transform.source(o[d], from: n, to: shape[d], scale: scales[d])
                let r: Double
                switch rounding {
                case .floor: r = Glibc.floor(c)
                case .ceil: r = Glibc.ceil(c)
                case .roundPreferFloor: r = c - Glibc.floor(c) == 0.5 ? Glibc.floor(c) : Glibc.round(c)
                case .roundPreferCeil: r = c - Glibc.floor(c) == 0.5 ? Glibc.ceil(c) : Glibc.round(c)
                }
                return Swift.min(Swift.max(Int(r), 0), n - 1)
            }
        }
    }

    var kindName: String { "Resize" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1, inputs[0].shape.count == shape.count else {
            throw FlowError.shapeMismatch("node '\(node)': Resize of rank \(shape.count) for \(inputs.map(\.shape))")
        }
        return shape
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        try Self.exportResize(&e, n, shape: shape, ["mode": .string("nearest"),
                                                    "coordinate_transformation_mode": .string(transform.rawValue),
                                                    "nearest_mode": .string(rounding.rawValue)])
    }

    /// A Resize node to `shape` per sample with `attributes`: sizes (not
    /// scales), so the output shape is exact; the batch extent from the input.
    static func exportResize(_ e: inout ONNXExporter, _ n: Graph.Node, shape: [Int],
                             _ attributes: [String: ONNXProtoModel.Attribute]) throws {
        let out = e.name(n.output)
        let x = e.name(n.inputs[0])
        let shapeOf = e.fresh(out + "/shape"), batch = e.fresh(out + "/batch"), sizes = e.fresh(out + "/sizes")
        e.node("Shape", [x], shapeOf)
        let zero = e.int64Initializer(out + "/zero", [0]), one = e.int64Initializer(out + "/one", [1])
        e.node("Slice", [shapeOf, zero, one], batch)
        let rest = e.int64Initializer(out + "/rest", shape.map(Int64.init))
        e.node("Concat", [batch, rest], sizes, ["axis": .int(0)])
        e.node("Resize", [x, "", "", sizes], out, attributes)
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["Resize": { i, n, _ in try i.resize(n) }, "Upsample": { i, n, _ in try i.resize(n) }]
    }
}

/// Resize with mode "linear" on per-sample axes (bilinear on H and W,
/// trilinear on three axes): on each resized axis, output index o has the
/// input coordinate c = transform(o), i = ⌊c⌋ and λ = c − i, and takes
/// (1 − λ)·x[i] + λ·x[i + 1] with both indices clamped to the axis. That is
/// ONNX's linear mode (edge padding) and PyTorch's bilinear/trilinear
/// interpolation (its clamp of negative coordinates gives the same value).
/// Over k resized axes an output element is a sum of 2^k taps x[index]·w,
/// w the product of the axes' weights, summed in a fixed order.
///
/// The op is linear in x: JVP ẏ = the same taps of ẋ; VJP g_x[index] += w·g.
struct LinearResizeOp: GraphOp {
    var shape: [Int]
    var scales: [Double]
    var transform: ResizeOp.Transform
    let taps: ResizeTaps

    init(shape: [Int], scales: [Double], transform: ResizeOp.Transform, inputShape: [Int], node: String) throws {
        guard shape.count == inputShape.count, scales.count == shape.count, shape.allSatisfy({ $0 > 0 }),
              transform != .tfHalfPixelForNearest else {
            throw FlowError.shapeMismatch("node '\(node)': linear resize \(inputShape) to \(shape) (\(transform.rawValue))")
        }
        (self.shape, self.scales, self.transform) = (shape, scales, transform)
        taps = try ResizeTaps(outShape: shape, inShape: inputShape, node: node) { d, o in
            let n = inputShape[d]
            let c = transform.source(o, from: n, to: shape[d], scale: scales[d])
            let i = Glibc.floor(c), lambda = c - i
            let i0 = Swift.min(Swift.max(Int(i), 0), n - 1), i1 = Swift.min(Swift.max(Int(i) + 1, 0), n - 1)
            return (i0, i1, lambda)
        }
    }

    var kindName: String { "Resize(linear)" }

    static func == (a: LinearResizeOp, b: LinearResizeOp) -> Bool {
        a.shape == b.shape && a.scales == b.scales && a.transform == b.transform
    }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1, inputs[0].shape.count == shape.count else {
            throw FlowError.shapeMismatch("node '\(node)': Resize of rank \(shape.count) for \(inputs.map(\.shape))")
        }
        return shape
    }

    func forward(_ c: OpContext) { interpolate(c, from: c.input(0), rows: c.batch) }
    func jvp(_ c: OpContext) { interpolate(c, from: c.tangent(0)!, rows: c.batch * c.k) }

    func vjp(_ c: OpContext) {
        guard let gx = c.gradient(0) else { return }
        let t = taps, n = t.count, inBlock = t.inBlock, outBlock = t.outBlock
        t.index.withUnsafeBufferPointer { ip in t.weight.withUnsafeBufferPointer { wp in
            for r in 0..<(c.batch * t.outer) {
                let g = c.out + r * outBlock, dst = gx + r * inBlock
                for p in 0..<outBlock {
                    let gp = g[p]
                    for j in (p * n)..<(p * n + n) { dst[Int(ip[j])] += wp[j] * gp }
                }
            }
        } }
    }

    private func interpolate(_ c: OpContext, from x: UnsafeMutablePointer<Float>, rows: Int) {
        let t = taps, n = t.count, inBlock = t.inBlock, outBlock = t.outBlock
        t.index.withUnsafeBufferPointer { ip in t.weight.withUnsafeBufferPointer { wp in
            for r in 0..<(rows * t.outer) {
                let src = x + r * inBlock, dst = c.out + r * outBlock
                for p in 0..<outBlock {
                    var sum: Float = 0
                    for j in (p * n)..<(p * n + n) { sum += wp[j] * src[Int(ip[j])] }
                    dst[p] = sum
                }
            }
        } }
    }

    func flops(_ inputs: [Graph.Value], output: Graph.Value) -> Int {
        2 * taps.count * output.shape.elementCount
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        try ResizeOp.exportResize(&e, n, shape: shape, ["mode": .string("linear"),
                                                        "coordinate_transformation_mode": .string(transform.rawValue)])
    }

    static var onnxImports: [String: ONNXImportRule] { [:] }  // ResizeOp's rule imports both modes
}

/// The taps of a linear resize, shared by copies of the op (built once).
/// The per-sample shape splits into `outer` leading axes that no resize
/// touches and a block from the first resized axis on: for each element p
/// of an output block, taps p·count ..< (p + 1)·count are (index into the
/// input block, weight).
final class ResizeTaps: @unchecked Sendable {
    let outer: Int, inBlock: Int, outBlock: Int
    /// Taps per output element: 2^(resized axes).
    let count: Int
    let index: [Int32]
    let weight: [Float]

    /// `axis(d, o)`: the two input indices and the weight λ of the second
    /// for output index o on resized axis d.
    /// - Throws: `.outOfMemory` past 2^26 taps (a hostile shape).
    init(outShape: [Int], inShape: [Int], node: String,
         _ axis: (_ d: Int, _ o: Int) -> (Int, Int, Double)) throws {
        let resized = outShape.indices.filter { outShape[$0] != inShape[$0] }
        let first = resized.first ?? outShape.count
        outer = outShape[..<first].reduce(1, *)
        let outTail = Array(outShape[first...]), inTail = Array(inShape[first...])
        count = 1 << resized.count
        guard resized.count <= 4, let ob = outTail.checkedElementCount, let ib = inTail.checkedElementCount,
              ob.multipliedReportingOverflow(by: count).partialValue <= 1 << 26, ob * count > 0, ib < Int(Int32.max) else {
            throw FlowError.outOfMemory("node '\(node)': linear resize \(inShape) to \(outShape) is too large")
        }
        outBlock = ob; inBlock = ib
        let inStrides = Strided.strides(of: inTail, broadcastTo: inTail)
        // Per tail axis, per output index: (i0, i1, λ); unresized axes copy.
        let tables: [[(Int, Int, Double)]] = outTail.indices.map { a in
            let d = first + a
            return (0..<outTail[a]).map { o in outShape[d] != inShape[d] ? axis(d, o) : (o, o, 0) }
        }
        let resizedTail = resized.map { $0 - first }
        var index = [Int32](repeating: 0, count: ob * count), weight = [Float](repeating: 0, count: ob * count)
        var o = [Int](repeating: 0, count: outTail.count)
        for p in 0..<ob {
            for corner in 0..<count {
                var flat = 0, w = 1.0
                for a in outTail.indices {
                    let (i0, i1, lambda) = tables[a][o[a]]
                    if let bit = resizedTail.firstIndex(of: a) {
                        let upper = corner >> bit & 1 == 1
                        flat += (upper ? i1 : i0) * inStrides[a]
                        w *= upper ? lambda : 1 - lambda
                    } else {
                        flat += i0 * inStrides[a]
                    }
                }
                index[p * count + corner] = Int32(flat)
                weight[p * count + corner] = Float(w)
            }
            var a = outTail.count - 1
            while a >= 0 { o[a] += 1; if o[a] < outTail[a] { break }; o[a] = 0; a -= 1 }
        }
        self.index = index
        self.weight = weight
    }
}

extension ONNXImporter {
    /// Resize (opset 10: X, scales; 11+: X, roi, scales, sizes) and the
    /// older Upsample (X, scales), in modes nearest and linear (Upsample-7's
    /// "bilinear" too).
    mutating func resize(_ n: Node) throws {
        guard case .batched(let id, let batchAxis) = try input(n, 0) else { throw unsupported(n, "resizing a constant") }
        var mode = n.attributes["mode"]?.s ?? "nearest"
        if mode == "bilinear" && n.opType == "Upsample" { mode = "linear" }
        guard mode == "nearest" || mode == "linear" else { throw unsupported(n, "mode '\(mode)' (nearest and linear are)") }
        if let policy = n.attributes["keep_aspect_ratio_policy"]?.s, policy != "stretch" {
            throw unsupported(n, "keep_aspect_ratio_policy '\(policy)'")
        }
        let shape = builder.shape(of: id)
        let full = (batchAxis ? [1] : []) + shape
        let defaultTransform = n.opType == "Upsample" || opset < 11 ? "asymmetric" : "half_pixel"
        let tName = n.attributes["coordinate_transformation_mode"]?.s ?? defaultTransform
        let rName = n.attributes["nearest_mode"]?.s ?? (n.opType == "Upsample" || opset < 11 ? "floor" : "round_prefer_floor")
        guard let transform = ResizeOp.Transform(rawValue: tName) else { throw unsupported(n, "coordinate_transformation_mode '\(tName)'") }
        guard let rounding = ResizeOp.Rounding(rawValue: rName) else { throw unsupported(n, "nearest_mode '\(rName)'") }
        if let axes = ints(n, "axes"), axes.count != full.count { throw unsupported(n, "the axes attribute") }
        var scales: [Double] = [], sizes: [Int] = []
        let scalesIndex = n.opType == "Upsample" || opset < 11 ? 1 : 2
        if case .float(let s, _)? = try optionalInput(n, scalesIndex), s.count > 0 {
            guard s.count == full.count, s.scalars.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw invalid(n, "scales \(s.scalars)") }
            scales = s.scalars.map(Double.init)
            sizes = (0..<full.count).map { Int(Glibc.floor(Double(full[$0]) * scales[$0])) }
        } else if scalesIndex == 2, case .ints(let c)? = try optionalInput(n, 3) {
            guard c.values.count == full.count else { throw invalid(n, "sizes of rank \(c.values.count) for rank \(full.count)") }
            sizes = c.values.enumerated().map { $0.element.value.map(Int.init) ?? ($0.offset == 0 && $0.element == .batch ? 1 : -1) }
            guard sizes.allSatisfy({ $0 > 0 && $0 <= 1 << 20 }) else { throw invalid(n, "sizes \(c.values)") }
            scales = (0..<full.count).map { Double(sizes[$0]) / Double(full[$0]) }
        } else {
            throw unsupported(n, "scales or sizes must be constants")
        }
        if batchAxis {
            guard sizes[0] == 1 else { throw unsupported(n, "resizing the batch axis") }
            sizes.removeFirst(); scales.removeFirst()
        }
        let op: Operation
        if mode == "linear" {
            guard transform != .tfHalfPixelForNearest else { throw unsupported(n, "linear mode with coordinate_transformation_mode '\(tName)'") }
            if n.attributes["antialias"]?.i ?? 0 != 0, scales.contains(where: { $0 < 1 }) {
                throw unsupported(n, "antialiased linear downsampling")
            }
            op = Operation(try LinearResizeOp(shape: sizes, scales: scales, transform: transform, inputShape: shape, node: currentNode))
        } else {
            op = Operation(try ResizeOp(shape: sizes, scales: scales, transform: transform, rounding: rounding, inputShape: shape,
                                        node: currentNode))
        }
        try set(n, .batched(try builder.apply(op, [id], name: currentNode), batchAxis: batchAxis))
    }
}
