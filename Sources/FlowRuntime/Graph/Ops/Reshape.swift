/// A new per-sample shape with the same element count (Reshape, Flatten,
/// Squeeze, Unsqueeze; Expand when it only relabels axes). Values, tangents
/// and gradients are copied unchanged.
struct ReshapeOp: GraphOp {
    var shape: [Int]

    var kindName: String { "Reshape" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1 else {
            throw FlowError.invalidModel("node '\(node)': Reshape takes 1 input, got \(inputs.count)")
        }
        guard shape.allSatisfy({ $0 >= 0 }), shape.checkedElementCount == inputs[0].shape.elementCount else {
            throw FlowError.shapeMismatch("node '\(node)': cannot reshape per-sample \(inputs[0].shape) to \(shape)")
        }
        return shape
    }

    func fold(_ inputs: [Tensor], node: String) throws -> Tensor {
        guard shape.checkedElementCount == inputs[0].count else {
            throw FlowError.shapeMismatch("node '\(node)': cannot reshape \(inputs[0].shape) to \(shape)")
        }
        return inputs[0].reshaped(shape)
    }

    /// Inference passes give the output its input's buffer
    /// (`ExecutionPlan.assignSlots`' views): nothing to copy then.
    func forward(_ c: OpContext) {
        let x = c.input(0)
        if x != c.out { c.out.update(from: x, count: c.batch * c.outputSize) }
    }
    func jvp(_ c: OpContext) { c.out.update(from: c.tangent(0)!, count: c.batch * c.k * c.outputSize) }
    func vjp(_ c: OpContext) {
        guard let gx = c.gradient(0) else { return }
        let g = c.out
        for i in 0..<(c.batch * c.outputSize) { gx[i] += g[i] }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let out = e.name(n.output)
        let s = e.int64Initializer(out + "/shape", [-1] + shape.map(Int64.init))
        e.node("Reshape", [e.name(n.inputs[0]), s], out)
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["Reshape": { i, n, _ in try i.reshape(n) },
         "Flatten": { i, n, _ in try i.flatten(n) },
         "Squeeze": { i, n, _ in try i.squeeze(n, unsqueeze: false) },
         "Unsqueeze": { i, n, _ in try i.squeeze(n, unsqueeze: true) },
         "Expand": { i, n, _ in try i.expand(n) }]
    }
}

extension Operation {
    /// A new per-sample shape with the same element count.
    public static func reshape(shape: [Int]) -> Operation { Operation(ReshapeOp(shape: shape)) }
}

// MARK: ONNX import

extension ONNXImporter {
    /// Squeeze/Unsqueeze: axes from the attribute (opset < 13) or input 1.
    mutating func squeeze(_ n: Node, unsqueeze: Bool) throws {
        let axes: [Int64]?
        if opset < 13 { axes = ints(n, "axes") } else { axes = n.inputs.count > 1 && !n.inputs[1].isEmpty ? try knownInts(n, 1, "axes") : nil }
        let v = try input(n, 0)
        var shape: [Int], withAxis = false
        switch v {
        case .batched(let id, let a):
            shape = builder.shape(of: id)
            if a { shape.insert(-1, at: batchPosition(id)) }
            withAxis = a
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
            var position = 0
            if withAxis {
                guard let p = out.firstIndex(of: -1) else { throw unsupported(n, "squeezing the batch axis") }
                position = p
                out.remove(at: p)
            }
            let y = try builder.apply(.reshape(shape: out), [id], name: currentNode)
            setBatchPosition(y, position)
            try set(n, .batched(y, batchAxis: withAxis))
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
        if case .batched(let id, true) = v, let m = mergedAxes[id] {
            try reshapeMerged(n, id, merged: m, target: target.values, allowZero: allowZero)
            return
        }
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
        // [batch × k, …] (bs * n_heads): the batch merged with k per-sample
        // elements, as a leading -1 would; checked against k below.
        var mergeFactor: Int64?
        if sourceHasBatch, case .batchTimes(let k) = out.first {
            mergeFactor = k
            out[0] = .known(-1)
        }
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
            case .batchTimes(let k):
                throw unsupported(n, "the batch size times \(k) on axis \(i) of the target shape")
            }
        }
        if sourceHasBatch && batchAt == nil, minusOne == 0, product > 0, product < knownSource,
           case .batched(let id, true) = v, let (lead, m) = mergePoint(builder.shape(of: id), trailing: product) {
            // [-1, …]: the batch merged with the per-sample axes `lead`.
            if let k = mergeFactor, k != Int64(lead.reduce(1, *)) {
                throw FlowError.shapeMismatch("node '\(currentNode)': cannot reshape \(source) to \(target.values)")
            }
            let kept = lead + out.dropFirst().map { Int($0.value!) }
            let y = try builder.apply(.reshape(shape: kept), [id], name: currentNode)
            mergedAxes[y] = m
            try set(n, .batched(y, batchAxis: true))
            return
        }
        if mergeFactor != nil { throw unsupported(n, "a reshape to \(target.values) that folds the batch with other axes") }
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
        case .float(let t, let trainable):
            guard batchAt == nil, shape.checkedElementCount == t.count else {
                throw FlowError.shapeMismatch("node '\(currentNode)': cannot reshape \(t.shape) to \(shape)")
            }
            // A reshaped initializer (a weight, a GroupNorm scale) stays trainable.
            try set(n, .float(t.reshaped(shape), trainable: trainable && t.count > 1))
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
            if case .batchTimes = e { throw unsupported(n, "expanding to \(e)") }
            if let k = e.value, k < 0 || k > Int64(foldedElementLimit) { throw invalid(n, "invalid target extent \(k)") }
        }
        let known = out.map { Int($0.value ?? 1) }
        switch v {
        case .float, .ints:
            // A float constant expanded over the batch is the same for every
            // sample: it keeps extent 1 there and broadcasts where it meets
            // batched values.
            if case .ints = v, out.first == .batch { throw unsupported(n, "expanding an integer constant over the batch") }
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


    /// The m with shape[m...] holding `trailing` elements (m ≥ 1), if any.
    /// Where a per-sample `shape` splits into leading axes that a Reshape to
    /// [-1, …] merges into the batch and `trailing` elements that stay:
    /// the leading axes (the last of them split off an axis when the
    /// boundary falls inside it, as [H·C, L] → [-1, C, L] folds H heads into
    /// the batch) and their count m.
    func mergePoint(_ shape: [Int], trailing: Int64) -> (lead: [Int], m: Int)? {
        for m in 1...Swift.max(1, shape.count) where m <= shape.count {
            let after = Int64(shape[m...].reduce(1, *))
            if after == trailing { return (Array(shape[..<m]), m) }
            let axis = Int64(shape[m - 1])
            if trailing > after, trailing % after == 0 {
                let inside = trailing / after
                if inside < axis, axis % inside == 0 { return (Array(shape[..<(m - 1)]) + [Int(axis / inside)], m) }
            }
        }
        return nil
    }

    /// Reshape of a value whose batch axis merges m per-sample axes: to
    /// [batch, …] (unmerged, all per-sample elements), or to [-1 or 0, …]
    /// keeping the merge and reshaping the trailing axes.
    mutating func reshapeMerged(_ n: Node, _ id: ValueID, merged m: Int, target: [SymbolicInt], allowZero: Bool) throws {
        let shape = builder.shape(of: id)
        let tail = Array(shape[m...])
        guard let first = target.first else { throw invalid(n, "an empty target shape") }
        var rest: [Int] = []
        for (i, e) in target.enumerated().dropFirst() {
            if e == .known(0) && !allowZero {
                guard i - 1 < tail.count else { throw invalid(n, "shape entry 0 at \(i) has no input dimension to copy") }
                rest.append(tail[i - 1])
            } else if let k = e.value, k >= 1 {
                rest.append(Int(k))
            } else if e == .known(-1) {
                rest.append(-1)
            } else {
                throw unsupported(n, "target \(target) for a value whose batch axis merges \(m) axes")
            }
        }
        func resolve(_ total: Int) throws -> [Int] {
            let known = rest.filter { $0 != -1 }.reduce(1, *)
            guard rest.filter({ $0 == -1 }).count <= 1, known > 0, total % known == 0 else {
                throw FlowError.shapeMismatch("node '\(currentNode)': cannot reshape \(shape) (batch merged with \(m) axes) to \(target)")
            }
            let r = rest.map { $0 == -1 ? total / known : $0 }
            guard r.reduce(1, *) == total else {
                throw FlowError.shapeMismatch("node '\(currentNode)': cannot reshape \(shape) (batch merged with \(m) axes) to \(target)")
            }
            return r
        }
        // [-1, …] whose other entries hold every per-sample element: the -1
        // is the batch again (the dynamo exporter's un-merge after a
        // head-folding attention, [B·H, C, L] → [-1, H·C, L]).
        let unmerges = first == .known(-1) && !rest.contains(-1) && rest.reduce(1, *) == shape.reduce(1, *)
            && rest.reduce(1, *) != tail.reduce(1, *)
        if first == .batch || unmerges {
            // A new value even for the same shape: it is no longer merged.
            let r = try resolve(shape.reduce(1, *))
            try set(n, .batched(try builder.apply(.reshape(shape: r), [id], name: currentNode), batchAxis: true))
        } else if first == .known(-1) || (first == .known(0) && !allowZero) {
            let r = Array(shape[..<m]) + (try resolve(tail.reduce(1, *)))
            let y = try builder.apply(.reshape(shape: r), [id], name: currentNode)
            mergedAxes[y] = m
            try set(n, .batched(y, batchAxis: true))
        } else {
            throw unsupported(n, "target \(target) for a value whose batch axis merges \(m) axes")
        }
    }
}
