import CKernels

/// Broadcasting Add, Sub, Mul, Div (numpy rules on per-sample shapes; a
/// parameter broadcasts over the batch).
///
/// JVP: add ȧ + ḃ; sub ȧ − ḃ; mul ȧ b + a ḃ; div (ȧ − z ḃ) / b.
/// VJP (reduced over broadcast axes): add (g, g); sub (g, −g);
/// mul (g b, g a); div (g / b, −g z / b).
struct BinaryOp: GraphOp {
    var function: BinaryFunction

    var kindName: String { function.rawValue }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 2 else {
            throw FlowError.invalidModel("node '\(node)': \(kindName) takes 2 inputs, got \(inputs.count)")
        }
        let a = inputs[0], b = inputs[1]
        let rank = Swift.max(a.isBatched ? a.shape.count : 0, b.isBatched ? b.shape.count : 0)
        func ps(_ v: Graph.Value) throws -> [Int] {
            if v.isBatched { return v.shape }
            guard let s = ShapeInference.perSampleShape(ofParameter: v.shape, againstRank: rank) else {
                throw FlowError.shapeMismatch("node '\(node)': constant \(v.name) of shape \(v.shape) does not broadcast over the batch")
            }
            return s
        }
        let sa = try ps(a), sb = try ps(b)
        guard let s = ShapeInference.broadcast(sa, sb) else {
            throw FlowError.shapeMismatch("node '\(node)': shapes \(sa) and \(sb) do not broadcast")
        }
        return s
    }

    func fold(_ inputs: [Tensor], node: String) throws -> Tensor {
        guard inputs.count == 2 else { throw FlowError.invalidModel("node '\(node)': \(kindName) takes 2 inputs") }
        return try GraphBuilder.broadcast(function, inputs[0], inputs[1], node: node)
    }

    func forward(_ c: OpContext) { c.executor.binaryForward(c, function) }
    func jvp(_ c: OpContext) { c.executor.binaryJVP(c, function) }
    func vjp(_ c: OpContext) { c.executor.binaryVJP(c.node, function, g: c.out, batch: c.batch, ws: c.ws) }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        e.node(function.rawValue, n.inputs.map(e.name), e.name(n.output))
    }

    static var onnxImports: [String: ONNXImportRule] {
        var rules: [String: ONNXImportRule] = [:]
        for f in BinaryFunction.allCases {
            rules[f.rawValue] = { importer, n, index in
                if try importer.fuseStandaloneActivation(n, index: index) { return }
                if f == .add, try importer.fuseLayerNormModulation(n, index: index) { return }
                try importer.binary(n, f)
            }
        }
        return rules
    }
}

extension Operation {
    /// Broadcasting elementwise binary operation.
    public static func binary(_ f: BinaryFunction) -> Operation { Operation(BinaryOp(function: f)) }
}

/// Elementwise binary functions with numpy broadcasting.
public enum BinaryFunction: String, Sendable, Equatable, CaseIterable {
    case add = "Add", sub = "Sub", mul = "Mul", div = "Div"
}

extension BinaryFunction {
    /// The op code of `fr_binary_rows`.
    var kernelCode: Int32 {
        switch self {
        case .add: 0
        case .sub: 1
        case .mul: 2
        case .div: 3
        }
    }
}


extension Executor {
    /// Full iteration shape and an operand's strides in it.
    /// `lead` is `[batch]` for values and `[batch, k]` for tangents; a primal
    /// operand in tangent space gets a 1 for the k axis, a parameter 1s for all
    /// lead axes.
    func operand(_ v: ValueID, pointer: UnsafePointer<Float>, lead: [Int], isTangent: Bool,
                 rank: Int, outShape: [Int]) -> StridedOperand {
        StridedOperand(pointer: pointer, strides: operandStrides(v, lead: lead, isTangent: isTangent, rank: rank,
                                                                 outShape: outShape))
    }

    /// The strides of `operand(...)`.
    func operandStrides(_ v: ValueID, lead: [Int], isTangent: Bool, rank: Int, outShape: [Int]) -> [Int] {
        let ps = plan.broadcastShapes[v]
        var l: [Int]
        if !graph.values[v].isBatched { l = [Int](repeating: 1, count: lead.count) }
        else if isTangent { l = lead }
        else { l = [lead[0]] + [Int](repeating: 1, count: lead.count - 1) }
        let full = l + [Int](repeating: 1, count: rank - ps.count) + ps
        return Strided.strides(of: full, broadcastTo: outShape)
    }

    func binaryForward(_ c: OpContext, _ f: BinaryFunction) {
        let node = c.node, ws = c.ws, out = c.out
        let a = data(node.inputs[0], ws), b = data(node.inputs[1], ws)
        let p = c.plan { BinaryLoop(self, node, batch: c.batch) }
        if let r = p.rows {
            for o in 0..<r.outer {
                fr_binary_rows(f.kernelCode, a + o * r.outerA, r.rowA, Int32(r.innerA), b + o * r.outerB, r.rowB,
                               Int32(r.innerB), out + o * r.outerY, r.rows, r.n)
            }
            return
        }
        Strided.run(f.stridedOp, p.loop, dst: out, accumulate: false, a, b, nil)
    }

    func binaryJVP(_ c: OpContext, _ f: BinaryFunction) {
        let node = c.node, ws = c.ws, out = c.out
        let p = c.plan { BinaryTangentLoops(self, node, f, batch: c.batch, k: c.k) }
        func pointer(_ o: BinaryFunction.JVPOperand) -> UnsafePointer<Float> {
            switch o {
            case .tangentA: UnsafePointer(tangent(node.inputs[0], ws)!)
            case .tangentB: UnsafePointer(tangent(node.inputs[1], ws)!)
            case .a: UnsafePointer(data(node.inputs[0], ws))
            case .b: UnsafePointer(data(node.inputs[1], ws))
            case .z: UnsafePointer(data(node.output, ws))
            }
        }
        out.update(repeating: 0, count: p.count)
        for t in p.terms {
            let o = t.operands
            Strided.run(t.op, t.loop, dst: out, accumulate: true, pointer(o[0]), o.count > 1 ? pointer(o[1]) : nil,
                        o.count > 2 ? pointer(o[2]) : nil)
        }
    }

    func binaryVJP(_ node: Graph.Node, _ f: BinaryFunction, g: UnsafeMutablePointer<Float>,
                   batch: Int, ws: GraphWorkspace) {
        let os = graph.values[node.output].shape
        let full = [batch] + os
        let r = os.count
        let (ia, ib) = (node.inputs[0], node.inputs[1])
        let gOp = StridedOperand(pointer: g, strides: Strided.strides(of: full, broadcastTo: full))
        func primal(_ v: ValueID) -> StridedOperand {
            operand(v, pointer: data(v, ws), lead: [batch], isTangent: false, rank: r, outShape: full)
        }
        func dstStrides(_ v: ValueID) -> [Int] {
            operand(v, pointer: data(v, ws), lead: [batch], isTangent: true, rank: r, outShape: full).strides
        }
        if let ga = gradient(ia, ws) {
            let op: StridedOp = f == .div ? .div : (f == .mul ? .mul : .copy)
            let second: StridedOperand? = f == .div || f == .mul ? primal(ib) : nil
            Strided.apply(op, shape: full, dst: ga, dstStrides: dstStrides(ia), accumulate: true, gOp, second)
        }
        if let gb = gradient(ib, ws) {
            let ds = dstStrides(ib)
            switch f {
            case .add: Strided.apply(.copy, shape: full, dst: gb, dstStrides: ds, accumulate: true, gOp)
            case .sub: Strided.apply(.neg, shape: full, dst: gb, dstStrides: ds, accumulate: true, gOp)
            case .mul: Strided.apply(.mul, shape: full, dst: gb, dstStrides: ds, accumulate: true, gOp, primal(ia))
            case .div:
                let z = primal(node.output)
                Strided.apply(.negMulDiv, shape: full, dst: gb, dstStrides: ds, accumulate: true, gOp, z, primal(ib))
            }
        }
    }
}

extension BinaryFunction {
    var stridedOp: StridedOp {
        switch self {
        case .add: return .add
        case .sub: return .sub
        case .mul: return .mul
        case .div: return .div
        }
    }
}

// MARK: ONNX import

extension ONNXImporter {
    /// Add/Sub/Mul/Div on any mix of batched values and constants.
    mutating func binary(_ n: Node, _ f: BinaryFunction) throws {
        let a = try input(n, 0), b = try input(n, 1)
        switch (a, b) {
        case (.float(let x, _), .float(let y, _)):
            guard let shape = ShapeInference.broadcast(x.shape, y.shape) else {
                throw FlowError.shapeMismatch("node '\(currentNode)': shapes \(x.shape) and \(y.shape) do not broadcast")
            }
            _ = try checkedCount(shape, limit: Swift.max(foldedElementLimit, x.count, y.count), "node '\(currentNode)'")
            try set(n, .float(try GraphBuilder.broadcast(f, x, y, node: currentNode), trainable: false))
        case (.ints(let x), .ints(let y)):
            try set(n, .ints(try intArithmetic(n, f, x, y)))
        case (.ints, _), (_, .ints):
            throw unsupported(n, "mixing integer and float operands")
        default:
            let (ids, axis) = try aligned(n, [a, b])
            let y = try builder.apply(.binary(f), ids, name: currentNode)
            try propagateMerge(n, from: ids, to: y)
            try set(n, .batched(y, batchAxis: axis))
        }
    }

    /// IR operands for an ONNX broadcasting op over batched values and float
    /// constants: constants and values without a batch axis whose rank equals
    /// the result's lose their leading (batch-aligned) extent-1 axis.
    mutating func aligned(_ n: Node, _ operands: [Imported]) throws -> ([ValueID], batchAxis: Bool) {
        var rank = 0, anyAxis = false
        for o in operands {
            switch o {
            case .batched(let id, let axis): rank = Swift.max(rank, onnxRank(id, axis)); anyAxis = anyAxis || axis
            case .float(let t, _): rank = Swift.max(rank, t.rank)
            case .ints: throw unsupported(n, "mixing integer and float operands")
            }
        }
        var ids: [ValueID] = []
        for (k, o) in operands.enumerated() {
            switch o {
            case .batched(let id, let axis):
                if axis {
                    guard onnxRank(id, axis) == rank else {
                        throw unsupported(n, "a batched operand of rank \(onnxRank(id, axis)) broadcast to rank \(rank) (its batch axis would move)")
                    }
                    ids.append(id)
                } else if anyAxis && onnxRank(id, axis) == rank {
                    let s = builder.shape(of: id)
                    guard s.first == 1 else { throw unsupported(n, "a value of shape \(s) broadcast against the batch axis") }
                    ids.append(try builder.apply(.reshape(shape: Array(s.dropFirst())), [id], name: "\(currentNode)/squeeze\(k)"))
                } else {
                    ids.append(id)
                }
            case .float(var t, let trainable):
                if anyAxis && t.rank == rank {
                    guard t.shape.first == 1 else {
                        throw FlowError.shapeMismatch("node '\(currentNode)': constant of shape \(t.shape) does not broadcast over the batch")
                    }
                    t = t.reshaped(Array(t.shape.dropFirst()))
                }
                ids.append(param(t, trainable: trainable && t.count > 1, n.inputs[k]))
            case .ints: break
            }
        }
        return (ids, anyAxis)
    }

    func intArithmetic(_ n: Node, _ f: BinaryFunction, _ x: IntConstant, _ y: IntConstant) throws -> IntConstant {
        let (shape, map) = try ConstantBroadcast.indices([x.shape, y.shape], node: currentNode)
        var out = [SymbolicInt]()
        out.reserveCapacity(map[0].count)
        for e in map[0].indices {
            let a = x.values[map[0][e]], b = y.values[map[1][e]]
            switch (a, b) {
            case (.known(let p), .known(let q)):
                switch f {
                case .add: out.append(.known(p &+ q))
                case .sub: out.append(.known(p &- q))
                case .mul: out.append(.known(p &* q))
                case .div:
                    guard q != 0 else { throw invalid(n, "integer division by zero") }
                    out.append(.known(p / q))
                }
            case (.batch, .known(let q)) where (f == .add || f == .sub) && q == 0,
                 (.known(let q), .batch) where f == .add && q == 0:
                out.append(.batch)
            case (let s, .known(let q)) where s.batchFactor != nil && f == .mul && q >= 1,
                 (.known(let q), let s) where s.batchFactor != nil && f == .mul && q >= 1:
                // bs * n_heads (a head-folding attention's reshape target).
                let (k, o) = s.batchFactor!.multipliedReportingOverflow(by: q)
                guard !o else { throw invalid(n, "batch size factor overflows") }
                out.append(.batch(times: k))
            case (let s, .known(let q)) where s.batchFactor != nil && f == .div && q >= 1 && s.batchFactor! % q == 0:
                out.append(.batch(times: s.batchFactor! / q))
            default:
                throw unsupported(n, "integer arithmetic on the batch size (\(a) \(f.rawValue) \(b))")
            }
        }
        return IntConstant(shape: shape, values: out)
    }
}

/// A broadcasting binary op's loop at one batch (`OpContext.plan`): the
/// iteration shape `[batch] + output shape` with the output's and both
/// operands' strides, adjacent axes merged (`Strided.coalesce`). Shapes that
/// merge into rows with a unit-stride or broadcast inner axis (a DiT's
/// [T, F] ⊙ [1, F] modulation, a U-Net's [C, HW] + [C, 1]) run as
/// `fr_binary_rows` calls (same values as `Strided.apply`, whose per-row
/// dispatch cost more than a 64-float row's arithmetic), one per index of a
/// third, outer axis (per-sample [1, F] operands against [T, F]: the batch
/// and row axes do not merge); any other through `Strided.apply`.
final class BinaryLoop {
    struct Rows {
        let outer: Int, outerY: Int, outerA: Int, outerB: Int
        let rows: Int, n: Int, rowA: Int, rowB: Int, innerA: Int, innerB: Int
    }
    /// The iteration with the output's, a's and b's strides.
    let loop: Strided.Loop
    let rows: Rows?

    init(_ ex: Executor, _ node: Graph.Node, batch: Int) {
        let os = ex.graph.values[node.output].shape
        let full = [batch] + os
        func strides(_ v: ValueID) -> [Int] {
            ex.operandStrides(v, lead: [batch], isTangent: false, rank: os.count, outShape: full)
        }
        loop = Strided.Loop(shape: full, dstStrides: Strided.strides(of: full, broadcastTo: full),
                            strides(node.inputs[0]), strides(node.inputs[1]), nil)
        let shp = loop.shape, st = loop.strides
        let r = shp.count
        if r <= 3, st[0].last == 1, st[1].last! <= 1, st[2].last! <= 1, st[1].last! >= 0, st[2].last! >= 0 {
            let three = r == 3
            rows = Rows(outer: three ? shp[0] : 1, outerY: three ? st[0][0] : 0, outerA: three ? st[1][0] : 0,
                        outerB: three ? st[2][0] : 0, rows: r >= 2 ? shp[r - 2] : 1, n: shp[r - 1],
                        rowA: r >= 2 ? st[1][r - 2] : 0, rowB: r >= 2 ? st[2][r - 2] : 0,
                        innerA: st[1][r - 1], innerB: st[2][r - 1])
        } else {
            rows = nil
        }
    }
}

/// A binary op's JVP loops at one (batch, k) (`OpContext.plan`): over
/// `[batch, k] + output shape`, the term (`BinaryFunction.tangentTerms`) of
/// each input that has tangents.
final class BinaryTangentLoops {
    /// Floats of the output tangents.
    let count: Int
    let terms: [(op: StridedOp, operands: [BinaryFunction.JVPOperand], loop: Strided.Loop)]

    init(_ ex: Executor, _ node: Graph.Node, _ f: BinaryFunction, batch: Int, k: Int) {
        let os = ex.graph.values[node.output].shape
        let full = [batch, k] + os
        count = full.reduce(1, *)
        let ds = Strided.strides(of: full, broadcastTo: full)
        func strides(_ o: BinaryFunction.JVPOperand) -> [Int] {
            let (v, tangent): (ValueID, Bool) = switch o {
            case .tangentA: (node.inputs[0], true)
            case .tangentB: (node.inputs[1], true)
            case .a: (node.inputs[0], false)
            case .b: (node.inputs[1], false)
            case .z: (node.output, false)
            }
            return ex.operandStrides(v, lead: [batch, k], isTangent: tangent, rank: os.count, outShape: full)
        }
        let (ta, tb) = f.tangentTerms
        terms = [(node.inputs[0], ta), (node.inputs[1], tb)].filter { ex.plan.hasTangent[$0.0] }.map { _, t in
            let st = t.operands.map(strides)
            return (t.op, t.operands, Strided.Loop(shape: full, dstStrides: ds, st[0], st.count > 1 ? st[1] : nil,
                                                   st.count > 2 ? st[2] : nil))
        }
    }
}

extension BinaryFunction {
    /// What a JVP term reads: an input's tangents or values, or the output.
    enum JVPOperand { case tangentA, tangentB, a, b, z }

    /// The JVP's term for ȧ and for ḃ (each added into the output tangent):
    /// add ȧ, ḃ; sub ȧ, −ḃ; mul ȧ·b, a·ḃ; div ȧ / b, −z·ḃ / b.
    var tangentTerms: (a: (op: StridedOp, operands: [JVPOperand]), b: (op: StridedOp, operands: [JVPOperand])) {
        switch self {
        case .add: ((.copy, [.tangentA]), (.copy, [.tangentB]))
        case .sub: ((.copy, [.tangentA]), (.neg, [.tangentB]))
        case .mul: ((.mul, [.tangentA, .b]), (.mul, [.a, .tangentB]))
        case .div: ((.div, [.tangentA, .b]), (.negMulDiv, [.z, .tangentB, .b]))
        }
    }
}
