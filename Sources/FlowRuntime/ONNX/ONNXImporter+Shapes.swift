/// Shape-only ops: folded at import when their inputs are constants (the
/// batch size stays a symbol), translated to IR reshapes/concats when they
/// act on batched values.
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

    mutating func concat(_ n: Node) throws {
        let axis = try int(n, "axis", Int64.max)
        guard axis != Int64.max else { throw invalid(n, "missing attribute 'axis'") }
        let inputs = try (0..<n.inputs.count).filter { !n.inputs[$0].isEmpty }.map { try input(n, $0) }
        guard !inputs.isEmpty else { throw invalid(n, "no inputs") }
        let batched = inputs.compactMap { v -> (ValueID, Bool)? in if case .batched(let id, let a) = v { return (id, a) }; return nil }
        if batched.isEmpty {
            // Constants: all float or all integer.
            let shapes = inputs.compactMap(constantShape)
            let rank = shapes[0].count
            let a = Int(axis < 0 ? axis + Int64(rank) : axis)
            guard a >= 0, a < rank, shapes.allSatisfy({ $0.count == rank }) else { throw invalid(n, "axis \(axis) or ranks \(shapes) invalid") }
            for s in shapes where Array(s[..<a]) != Array(shapes[0][..<a]) || Array(s[(a + 1)...]) != Array(shapes[0][(a + 1)...]) {
                throw FlowError.shapeMismatch("node '\(currentNode)': Concat shapes \(shapes) differ off axis \(axis)")
            }
            var out = shapes[0]
            out[a] = shapes.map { $0[a] }.reduce(0, +)
            let largest = shapes.map(\.elementCount).max() ?? 0
            let total = try checkedCount(out, limit: Swift.max(foldedElementLimit, largest), "node '\(currentNode)'")
            let outer = out[..<a].reduce(1, *)
            let allFloat = inputs.allSatisfy { if case .float = $0 { return true }; return false }
            let allInts = inputs.allSatisfy { if case .ints = $0 { return true }; return false }
            guard allFloat || allInts else { throw unsupported(n, "mixing float and integer constants") }
            var floats: [Float] = [], symbols: [SymbolicInt] = []
            floats.reserveCapacity(allFloat ? total : 0)
            for o in 0..<outer {
                for (k, v) in inputs.enumerated() {
                    let chunk = shapes[k][a...].reduce(1, *)
                    switch v {
                    case .float(let t, _): floats += t.scalars[(o * chunk)..<((o + 1) * chunk)]
                    case .ints(let i): symbols += i.values[(o * chunk)..<((o + 1) * chunk)]
                    case .batched: break
                    }
                }
            }
            try set(n, allFloat ? .float(Tensor(shape: out, scalars: floats), trainable: false)
                                : .ints(IntConstant(shape: out, values: symbols)))
            return
        }
        guard batched.count == inputs.count else { throw unsupported(n, "concatenating constants with batched values") }
        let withAxis = batched[0].1
        guard batched.allSatisfy({ $0.1 == withAxis }) else {
            throw unsupported(n, "concatenating values with and without a batch axis")
        }
        let rank = onnxRank(batched[0].0, withAxis)
        let a = try sampleAxis(n, axis, rank: rank, batchAxis: withAxis)
        try set(n, .batched(try builder.apply(.concat(axis: a), batched.map(\.0), name: currentNode), batchAxis: withAxis))
    }

    /// Squeeze/Unsqueeze: axes from the attribute (opset < 13) or input 1.
    mutating func squeeze(_ n: Node, unsqueeze: Bool) throws {
        let axes: [Int64]?
        if opset < 13 { axes = ints(n, "axes") } else { axes = n.inputs.count > 1 && !n.inputs[1].isEmpty ? try knownInts(n, 1, "axes") : nil }
        let v = try input(n, 0)
        var shape: [Int], withAxis = false
        switch v {
        case .batched(let id, let a): shape = (a ? [-1] : []) + builder.shape(of: id); withAxis = a
        default: shape = constantShape(v)!
        }
        var out: [Int]
        if unsqueeze {
            guard let axes, !axes.isEmpty else { throw invalid(n, "Unsqueeze needs axes") }
            let r = shape.count + axes.count
            let norm = Set(try axes.map { a -> Int in
                let x = a < 0 ? a + Int64(r) : a
                guard x >= 0 && x < Int64(r) else { throw invalid(n, "axis \(a) out of range") }
                return Int(x)
            })
            guard norm.count == axes.count else { throw invalid(n, "repeated axes \(axes)") }
            out = []
            var it = shape.makeIterator()
            for i in 0..<r { out.append(norm.contains(i) ? 1 : it.next()!) }
        } else {
            let r = shape.count
            let norm: Set<Int>
            if let axes, !axes.isEmpty {
                norm = Set(try axes.map { a -> Int in
                    let x = a < 0 ? a + Int64(r) : a
                    guard x >= 0 && x < Int64(r), shape[Int(x)] == 1 else { throw invalid(n, "cannot squeeze axis \(a) of shape \(shape)") }
                    return Int(x)
                })
            } else {
                norm = Set(shape.indices.filter { shape[$0] == 1 })
            }
            out = shape.indices.filter { !norm.contains($0) }.map { shape[$0] }
        }
        switch v {
        case .batched(let id, _):
            if withAxis {
                guard out.first == -1 else { throw unsupported(n, "moving the batch axis") }
                out.removeFirst()
            }
            try set(n, .batched(try builder.apply(.reshape(shape: out), [id], name: currentNode), batchAxis: withAxis))
        case .float(let t, _): try set(n, .float(t.reshaped(out), trainable: false))
        case .ints(var i): i.shape = out; try set(n, .ints(i))
        }
    }

    mutating func reshape(_ n: Node) throws {
        guard case .ints(let target) = try input(n, 1), target.shape.count == 1 else {
            throw unsupported(n, "the shape must be a 1-D integer constant")
        }
        let allowZero = try int(n, "allowzero", 0) != 0
        let v = try input(n, 0)
        var source: [SymbolicInt]
        switch v {
        case .batched(let id, let a): source = (a ? [.batch] : []) + builder.shape(of: id).map { .known(Int64($0)) }
        default: source = constantShape(v)!.map { .known(Int64($0)) }
        }
        // Resolve 0 (copy) entries, then a single -1.
        var out: [SymbolicInt] = []
        for (i, e) in target.values.enumerated() {
            if e == .known(0) && !allowZero {
                guard i < source.count else { throw invalid(n, "shape entry 0 at \(i) has no input dimension to copy") }
                out.append(source[i])
            } else { out.append(e) }
        }
        let sourceHasBatch = source.first == .batch
        let knownSource = source.compactMap(\.value).reduce(1, { $0 &* $1 })
        var minusOne: Int?
        var product: Int64 = 1
        var batchAt: Int?
        for (i, e) in out.enumerated() {
            switch e {
            case .batch:
                guard batchAt == nil else { throw unsupported(n, "the batch size appears twice in the target shape") }
                batchAt = i
            case .known(-1):
                guard minusOne == nil else { throw invalid(n, "more than one -1 in the shape") }
                minusOne = i
            case .known(let k):
                guard k >= 0, k < (1 << 40) else { throw invalid(n, "invalid shape entry \(k)") }
                let (p, o) = product.multipliedReportingOverflow(by: k)
                guard !o else { throw invalid(n, "shape overflows") }
                product = p
            }
        }
        if sourceHasBatch && batchAt == nil {
            // A -1 takes the batch when the rest already matches the sample size.
            guard let m = minusOne, product == knownSource else {
                throw unsupported(n, "a reshape that mixes the batch axis with other axes")
            }
            out[m] = .batch
            minusOne = nil
            batchAt = m
        } else if let m = minusOne {
            guard product > 0, knownSource % product == 0 else {
                throw FlowError.shapeMismatch("node '\(currentNode)': cannot reshape \(source) to \(target.values)")
            }
            out[m] = .known(knownSource / product)
        }
        let shape = out.map { Int($0.value ?? -1) }
        switch v {
        case .batched(let id, let a):
            if a {
                guard batchAt == 0 else { throw unsupported(n, "a reshape that moves the batch axis") }
                try set(n, .batched(try builder.apply(.reshape(shape: Array(shape.dropFirst())), [id], name: currentNode), batchAxis: true))
            } else {
                guard batchAt == nil else { throw unsupported(n, "reshaping a value without a batch axis to one with a batch axis (use Expand)") }
                try set(n, .batched(try builder.apply(.reshape(shape: shape), [id], name: currentNode), batchAxis: false))
            }
        case .float(let t, _):
            guard batchAt == nil, shape.checkedElementCount == t.count else {
                throw FlowError.shapeMismatch("node '\(currentNode)': cannot reshape \(t.shape) to \(shape)")
            }
            try set(n, .float(t.reshaped(shape), trainable: false))
        case .ints(var i):
            guard batchAt == nil, shape.checkedElementCount == i.values.count else {
                throw FlowError.shapeMismatch("node '\(currentNode)': cannot reshape \(i.shape) to \(shape)")
            }
            i.shape = shape
            try set(n, .ints(i))
        }
    }

    mutating func flatten(_ n: Node) throws {
        let axis = try int(n, "axis", 1)
        switch try input(n, 0) {
        case .batched(let id, true):
            guard axis == 1 || axis == -Int64(onnxRank(id, true)) + 1 else { throw unsupported(n, "Flatten axis \(axis) (only 1)") }
            let c = builder.shape(of: id).elementCount
            try set(n, .batched(try builder.apply(.reshape(shape: [c]), [id], name: currentNode), batchAxis: true))
        case .float(let t, _):
            let a = Int(axis < 0 ? axis + Int64(t.rank) : axis)
            guard a >= 0 && a <= t.rank else { throw invalid(n, "axis \(axis)") }
            try set(n, .float(t.reshaped([t.shape[..<a].reduce(1, *), t.shape[a...].reduce(1, *)]), trainable: false))
        default: throw unsupported(n, "Flatten of this input")
        }
    }

    /// Expand: broadcast to a target shape that may hold the batch symbol.
    mutating func expand(_ n: Node) throws {
        guard case .ints(let target) = try input(n, 1), target.shape.count == 1 else {
            throw unsupported(n, "the shape must be a 1-D integer constant")
        }
        let v = try input(n, 0)
        var source: [SymbolicInt]
        switch v {
        case .batched(let id, let a): source = (a ? [.batch] : []) + builder.shape(of: id).map { .known(Int64($0)) }
        default: source = constantShape(v)!.map { .known(Int64($0)) }
        }
        let r = Swift.max(source.count, target.values.count)
        let ps = [SymbolicInt](repeating: .known(1), count: r - source.count) + source
        let pt = [SymbolicInt](repeating: .known(1), count: r - target.values.count) + target.values
        var out: [SymbolicInt] = []
        for (a, b) in zip(ps, pt) {
            if a == b || b == .known(1) { out.append(a) }
            else if a == .known(1) { out.append(b) }
            else { throw FlowError.shapeMismatch("node '\(currentNode)': cannot expand \(source) to \(target.values)") }
        }
        for (i, e) in out.enumerated() {
            if e == .batch && i != 0 { throw unsupported(n, "the batch size on a non-leading axis") }
            if let k = e.value, k < 0 || k > Int64(foldedElementLimit) { throw invalid(n, "invalid target extent \(k)") }
        }
        let known = out.map { Int($0.value ?? 1) }
        switch v {
        case .float, .ints:
            guard out.first != .batch else { throw unsupported(n, "expanding a constant over the batch") }
            let (shape, map) = try ConstantBroadcast.indices([constantShape(v)!, known], node: currentNode)
            try set(n, pick(v, map[0], shape: shape))
        case .batched(let id, let a):
            let resultAxis = out.first == .batch
            guard !a || (resultAxis && source.count == r) else { throw unsupported(n, "an expand that moves the batch axis") }
            let newShape = resultAxis ? Array(known.dropFirst()) : known
            var x = id
            var s = builder.shape(of: id)
            // Drop a leading extent-1 axis that aligns with the new batch axis.
            if !a && resultAxis && s.count == r { s.removeFirst(); x = try builder.apply(.reshape(shape: s), [x], name: currentNode + "/align") }
            if s.elementCount == newShape.elementCount {
                if s != newShape { x = try builder.apply(.reshape(shape: newShape), [x], name: currentNode) }
            } else {
                _ = try checkedCount(newShape, "node '\(currentNode)'")
                let zeros = param(Tensor(shape: newShape), trainable: false, currentNode + "/zeros")
                x = try builder.apply(.binary(.add), [x, zeros], name: currentNode)
            }
            try set(n, .batched(x, batchAxis: resultAxis))
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
        guard let k = s.knownValues else { throw unsupported(n, "a constant whose shape depends on the batch size") }
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

    mutating func layerNorm(_ n: Node) throws {
        guard case .batched(let x, let a) = try input(n, 0) else { throw unsupported(n, "LayerNormalization of a constant") }
        for (i, o) in n.outputs.enumerated() where i > 0 && !o.isEmpty && readers[o] != nil {
            throw unsupported(n, "the Mean/InvStdDev outputs are used")
        }
        let axis = try sampleAxis(n, try int(n, "axis", -1), rank: onnxRank(x, a), batchAxis: a)
        let eps = try float(n, "epsilon", 1e-5)
        let normalized = Array(builder.shape(of: x)[axis...])
        var inputs = [x]
        let scale = try floatConstant(n, 1, "Scale")
        guard scale.count == normalized.elementCount else {
            throw FlowError.shapeMismatch("node '\(currentNode)': scale \(scale.shape) does not match the normalised shape \(normalized)")
        }
        inputs.append(param(scale.reshaped(normalized), trainable: true, n.inputs[1]))
        if n.inputs.count > 2 && !n.inputs[2].isEmpty {
            let bias = try floatConstant(n, 2, "B")
            guard bias.count == normalized.elementCount else {
                throw FlowError.shapeMismatch("node '\(currentNode)': bias \(bias.shape) does not match the normalised shape \(normalized)")
            }
            inputs.append(param(bias.reshaped(normalized), trainable: true, n.inputs[2]))
        } else {
            inputs.append(param(Tensor(shape: normalized), trainable: true, currentNode + ".bias"))
        }
        try set(n, .batched(try builder.apply(.layerNorm(axis: axis, epsilon: eps), inputs, name: currentNode), batchAxis: a))
    }

    /// ReduceMean/ReduceSum over per-sample axes; axes from the attribute
    /// (ReduceMean before opset 18, ReduceSum before 13) or input 1.
    mutating func reduce(_ n: Node) throws {
        let axesAsInput = n.opType == "ReduceMean" ? opset >= 18 : opset >= 13
        let axes: [Int64]? = axesAsInput
            ? (n.inputs.count > 1 && !n.inputs[1].isEmpty ? try knownInts(n, 1, "axes") : nil)
            : ints(n, "axes")
        let keep = try int(n, "keepdims", 1) != 0
        guard case .batched(let x, let a) = try input(n, 0) else { throw unsupported(n, "a reduction of constants") }
        guard let axes, !axes.isEmpty else {
            if try int(n, "noop_with_empty_axes", 0) != 0 { try set(n, .batched(x, batchAxis: a)); return }
            throw unsupported(n, "a reduction over all axes (including the batch)")
        }
        let rank = onnxRank(x, a)
        let sampleAxes = try axes.map { try sampleAxis(n, $0, rank: rank, batchAxis: a) }
        let op: Operation = n.opType == "ReduceMean" ? .reduceMean(axes: sampleAxes, keepDims: keep) : .reduceSum(axes: sampleAxes, keepDims: keep)
        try set(n, .batched(try builder.apply(op, [x], name: currentNode), batchAxis: a))
    }
}
