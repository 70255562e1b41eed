#if canImport(Glibc)
import Glibc
#endif

/// Resize with mode "nearest" on per-sample axes: output index o on axis d
/// reads input index nearest(transform(o)), with ONNX's coordinate
/// transformation and nearest-rounding modes. Runs as an index map.
struct ResizeOp: IndexMappingOp {
    enum Transform: String, Sendable {
        case halfPixel = "half_pixel", pytorchHalfPixel = "pytorch_half_pixel", alignCorners = "align_corners"
        case asymmetric, tfHalfPixelForNearest = "tf_half_pixel_for_nearest"
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
                let n = inputShape[d], m = shape[d], s = scales[d], x = Double(o[d])
                let c: Double
                switch transform {
                case .halfPixel: c = (x + 0.5) / s - 0.5
                case .pytorchHalfPixel: c = m > 1 ? (x + 0.5) / s - 0.5 : 0
                case .alignCorners: c = m > 1 ? x * Double(n - 1) / Double(m - 1) : 0
                case .asymmetric: c = x / s
                case .tfHalfPixelForNearest: c = (x + 0.5) / s
                }
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
        let out = e.name(n.output)
        // sizes (not scales), so the output shape is exact; batch extent from the input.
        let x = e.name(n.inputs[0])
        let shapeOf = e.fresh(out + "/shape"), batch = e.fresh(out + "/batch"), sizes = e.fresh(out + "/sizes")
        e.node("Shape", [x], shapeOf)
        let zero = e.int64Initializer(out + "/zero", [0]), one = e.int64Initializer(out + "/one", [1])
        e.node("Slice", [shapeOf, zero, one], batch)
        let rest = e.int64Initializer(out + "/rest", shape.map(Int64.init))
        e.node("Concat", [batch, rest], sizes, ["axis": .int(0)])
        e.node("Resize", [x, "", "", sizes], out, ["mode": .string("nearest"),
                                                   "coordinate_transformation_mode": .string(transform.rawValue),
                                                   "nearest_mode": .string(rounding.rawValue)])
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["Resize": { i, n, _ in try i.resize(n) }, "Upsample": { i, n, _ in try i.resize(n) }]
    }
}

extension ONNXImporter {
    /// Resize (opset 10: X, scales; 11+: X, roi, scales, sizes) and the
    /// older Upsample (X, scales), nearest mode only.
    mutating func resize(_ n: Node) throws {
        guard case .batched(let id, let batchAxis) = try input(n, 0) else { throw unsupported(n, "resizing a constant") }
        let mode = n.attributes["mode"]?.s ?? "nearest"
        guard mode == "nearest" else { throw unsupported(n, "mode '\(mode)' (only nearest)") }
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
            sizes = c.values.enumerated().map { $0.element.value.map(Int.init) ?? ($0.offset == 0 ? 1 : -1) }
            guard sizes.allSatisfy({ $0 > 0 && $0 <= 1 << 20 }) else { throw invalid(n, "sizes \(c.values)") }
            scales = (0..<full.count).map { Double(sizes[$0]) / Double(full[$0]) }
        } else {
            throw unsupported(n, "scales or sizes must be constants")
        }
        if batchAxis {
            guard sizes[0] == 1 else { throw unsupported(n, "resizing the batch axis") }
            sizes.removeFirst(); scales.removeFirst()
        }
        let op = try ResizeOp(shape: sizes, scales: scales, transform: transform, rounding: rounding, inputShape: shape, node: currentNode)
        try set(n, .batched(try builder.apply(Operation(op), [id], name: currentNode), batchAxis: batchAxis))
    }
}
