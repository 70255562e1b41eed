/// ONNX ops that only ever compute constants (shape chains, masks): folded
/// at import with the batch size kept as a symbol. Ops that act on batched
/// values import in their op's file (`Graph/Ops`).
extension ONNXImporter {
    /// Rearranges constant elements (float or integer) by flat index.
    func pick(_ c: Imported, _ map: [Int], shape: [Int]) -> Imported {
        switch c {
        case .float(let t, _): return .float(Tensor(shape: shape, scalars: map.map { t.scalars[$0] }), trainable: false)
        case .ints(let i): return .ints(IntConstant(shape: shape, values: map.map { i.values[$0] }))
        case .batched: return c
        }
    }
    func constantShape(_ c: Imported) -> [Int]? {
        switch c {
        case .float(let t, _): return t.shape
        case .ints(let i): return i.shape
        case .batched: return nil
        }
    }

    mutating func shapeOf(_ n: Node) throws {
        let v = try input(n, 0)
        var dims: [SymbolicInt]
        switch v {
        case .batched(let id, let a): dims = (a ? [.batch] : []) + builder.shape(of: id).map { .known(Int64($0)) }
        default: dims = constantShape(v)!.map { .known(Int64($0)) }
        }
        let r = Int64(dims.count)
        func clamp(_ x: Int64) -> Int { Int(Swift.min(Swift.max(x < 0 ? x + r : x, 0), r)) }
        let start = clamp(try int(n, "start", 0)), end = clamp(try int(n, "end", r))
        dims = start < end ? Array(dims[start..<end]) : []
        try set(n, .ints(IntConstant(shape: [dims.count], values: dims)))
    }

    mutating func gather(_ n: Node) throws {
        let data = try input(n, 0)
        guard let shape = constantShape(data) else { throw unsupported(n, "Gather from a batched value") }
        guard case .ints(let idx) = try input(n, 1), let indices = idx.knownValues else {
            throw unsupported(n, "the indices must be an integer constant")
        }
        let axisRaw = try int(n, "axis", 0)
        let axis = Int(axisRaw < 0 ? axisRaw + Int64(shape.count) : axisRaw)
        guard axis >= 0 && axis < shape.count else { throw invalid(n, "axis \(axisRaw) out of range for \(shape)") }
        let extent = shape[axis]
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *)
        let outShape = Array(shape[..<axis]) + idx.shape + Array(shape[(axis + 1)...])
        _ = try checkedCount(outShape, limit: Swift.max(foldedElementLimit, shape.elementCount), "node '\(currentNode)'")
        var map: [Int] = []
        for o in 0..<outer {
            for i in indices {
                let j = i < 0 ? i + Int64(extent) : i
                guard j >= 0 && j < Int64(extent) else { throw invalid(n, "index \(i) out of range for extent \(extent)") }
                for k in 0..<inner { map.append((o * extent + Int(j)) * inner + k) }
            }
        }
        try set(n, pick(data, map, shape: outShape))
    }

    mutating func constantOfShape(_ n: Node) throws {
        guard case .ints(let s) = try input(n, 0) else { throw unsupported(n, "the shape must be an integer constant") }
        // A leading batch extent gives a float constant with extent 1 there
        // (equal for every sample; it broadcasts against batched values).
        let overBatch = s.values.first == .batch && s.values.dropFirst().allSatisfy { $0.value != nil }
        guard let k = overBatch ? [1] + s.values.dropFirst().map({ $0.value! }) : s.knownValues else {
            throw unsupported(n, "a constant whose shape depends on the batch size")
        }
        guard k.allSatisfy({ $0 >= 0 && $0 < (1 << 40) }) else { throw invalid(n, "invalid shape \(k)") }
        let shape = k.map { Int($0) }
        let count = try checkedCount(shape, "node '\(currentNode)'")
        var value: Imported = .float(Tensor(shape: [1], scalars: [0]), trainable: false)
        if let t = n.attributes["value"]?.t {
            switch try ONNXTensorDecoding.decode(t, directory: nil) {
            case .float(let f): value = .float(f, trainable: false)
            case .ints(let i): value = .ints(i)
            }
        }
        guard constantShape(value).map({ $0.elementCount }) == 1 else { throw invalid(n, "value must hold one element") }
        if overBatch, case .ints = value { throw unsupported(n, "an integer constant over the batch") }
        try set(n, pick(value, [Int](repeating: 0, count: count), shape: shape))
    }

    /// Equal/Greater/Less of constants (the shape chains' masks).
    mutating func compare(_ n: Node) throws {
        let a = try input(n, 0), b = try input(n, 1)
        guard let sa = constantShape(a), let sb = constantShape(b) else {
            throw unsupported(n, "a comparison on batched values (only Softplus's threshold pattern is supported)")
        }
        let (shape, map) = try ConstantBroadcast.indices([sa, sb], node: currentNode)
        func scalars(_ v: Imported) -> [SymbolicInt]? {
            switch v {
            case .ints(let i): return i.values
            case .float(let t, _): return t.scalars.allSatisfy { $0 == $0.rounded() && abs($0) < 1e15 } ? t.scalars.map { .known(Int64($0)) } : nil
            case .batched: return nil
            }
        }
        var out: [SymbolicInt] = []
        if case .float(let x, _) = a, case .float(let y, _) = b {
            for e in map[0].indices {
                let p = x.scalars[map[0][e]], q = y.scalars[map[1][e]]
                out.append(.known((n.opType == "Equal" ? p == q : n.opType == "Greater" ? p > q : p < q) ? 1 : 0))
            }
        } else {
            guard let x = scalars(a), let y = scalars(b) else { throw unsupported(n, "comparing float and integer constants") }
            for e in map[0].indices {
                let p = x[map[0][e]], q = y[map[1][e]]
                switch (p, q) {
                case (.known(let u), .known(let v)):
                    out.append(.known((n.opType == "Equal" ? u == v : n.opType == "Greater" ? u > v : u < v) ? 1 : 0))
                case (.batch, .batch) where n.opType == "Equal":
                    out.append(.known(1))
                case (.batch, .known(let v)) where v < 1, (.known(let v), .batch) where v < 1:
                    // The batch size is at least 1.
                    let batchFirst = p == .batch
                    let r: Bool = n.opType == "Equal" ? false : n.opType == "Greater" ? batchFirst : !batchFirst
                    out.append(.known(r ? 1 : 0))
                default:
                    throw unsupported(n, "a comparison that depends on the batch size")
                }
            }
        }
        try set(n, .ints(IntConstant(shape: shape, values: out)))
    }

    mutating func whereNode(_ n: Node) throws {
        let c = try input(n, 0), a = try input(n, 1), b = try input(n, 2)
        guard case .ints(let cond) = c, let sa = constantShape(a), let sb = constantShape(b) else {
            throw unsupported(n, "Where on batched values (only Softplus's threshold pattern is supported)")
        }
        let (shape, map) = try ConstantBroadcast.indices([cond.shape, sa, sb], node: currentNode)
        switch (a, b) {
        case (.float(let x, _), .float(let y, _)):
            var out: [Float] = []
            for e in map[0].indices {
                guard let k = cond.values[map[0][e]].value else { throw unsupported(n, "a condition on the batch size") }
                out.append(k != 0 ? x.scalars[map[1][e]] : y.scalars[map[2][e]])
            }
            try set(n, .float(Tensor(shape: shape, scalars: out), trainable: false))
        case (.ints(let x), .ints(let y)):
            var out: [SymbolicInt] = []
            for e in map[0].indices {
                guard let k = cond.values[map[0][e]].value else { throw unsupported(n, "a condition on the batch size") }
                out.append(k != 0 ? x.values[map[1][e]] : y.values[map[2][e]])
            }
            try set(n, .ints(IntConstant(shape: shape, values: out)))
        default:
            throw unsupported(n, "mixing float and integer branches")
        }
    }
}

extension ONNXImporter {
    /// Import rules for the constant-only ONNX ops.
    /// Mod of integer constants (shape arithmetic: nn.MultiheadAttention's
    /// and nn.Unflatten's legacy exports): fmod 0 takes the divisor's sign
    /// (Python's %), fmod 1 the dividend's (C's fmod).
    mutating func mod(_ n: Node) throws {
        guard case .ints(let a) = try input(n, 0), case .ints(let b) = try input(n, 1),
              let x = a.knownValues, let y = b.knownValues else {
            throw unsupported(n, "Mod of anything but integer constants known at load time")
        }
        let cFmod = try int(n, "fmod", 0) != 0
        let (shape, map) = try ConstantBroadcast.indices([a.shape, b.shape], node: currentNode)
        let out = try map[0].indices.map { e -> SymbolicInt in
            let p = x[map[0][e]], q = y[map[1][e]]
            guard q != 0 else { throw invalid(n, "integer modulo by zero") }
            let r = p % q
            return .known(cFmod || r == 0 || (r < 0) == (q < 0) ? r : r + q)
        }
        try set(n, .ints(IntConstant(shape: shape, values: out)))
    }

    static var constantImports: [String: ONNXImportRule] {
        ["Constant": { i, n, _ in try i.set(n, try i.constantNode(n)) },
         "Identity": { i, n, _ in try i.set(n, try i.input(n, 0)) },
         // Inference mode: Dropout is the identity (its mask output unused).
         "Dropout": { i, n, _ in try i.set(n, try i.input(n, 0)) },
         "Cast": { i, n, _ in try i.cast(n) },
         "Shape": { i, n, _ in try i.shapeOf(n) },
         "ConstantOfShape": { i, n, _ in try i.constantOfShape(n) },
         "Equal": { i, n, _ in try i.compare(n) }, "Greater": { i, n, _ in try i.compare(n) }, "Less": { i, n, _ in try i.compare(n) },
         "Where": { i, n, _ in try i.whereNode(n) },
         "Mod": { i, n, _ in try i.mod(n) }]
    }
}
