/// Broadcasting Add, Sub, Mul, Div.
///
/// JVP: add ȧ + ḃ; sub ȧ − ḃ; mul ȧ b + a ḃ; div (ȧ − z ḃ) / b.
/// VJP (reduced over broadcast axes): add (g, g); sub (g, −g);
/// mul (g b, g a); div (g / b, −g z / b).
extension Executor {
    /// Full iteration shape and an operand's strides in it.
    /// `lead` is `[batch]` for values and `[batch, k]` for tangents; a primal
    /// operand in tangent space gets a 1 for the k axis, a parameter 1s for all
    /// lead axes.
    func operand(_ v: ValueID, pointer: UnsafePointer<Float>, lead: [Int], isTangent: Bool,
                 rank: Int, outShape: [Int]) -> StridedOperand {
        let ps = plan.broadcastShapes[v]
        var l: [Int]
        if !graph.values[v].isBatched { l = [Int](repeating: 1, count: lead.count) }
        else if isTangent { l = lead }
        else { l = [lead[0]] + [Int](repeating: 1, count: lead.count - 1) }
        let full = l + [Int](repeating: 1, count: rank - ps.count) + ps
        return StridedOperand(pointer: pointer, strides: Strided.strides(of: full, broadcastTo: outShape))
    }

    func binaryForward(_ node: Graph.Node, _ f: BinaryFunction, out: UnsafeMutablePointer<Float>,
                       batch: Int, ws: GraphWorkspace) {
        let os = graph.values[node.output].shape
        let full = [batch] + os
        let a = operand(node.inputs[0], pointer: data(node.inputs[0], ws), lead: [batch], isTangent: false, rank: os.count, outShape: full)
        let b = operand(node.inputs[1], pointer: data(node.inputs[1], ws), lead: [batch], isTangent: false, rank: os.count, outShape: full)
        Strided.apply(f.stridedOp, shape: full, dst: out, dstStrides: Strided.strides(of: full, broadcastTo: full),
                      accumulate: false, a, b)
    }

    func binaryJVP(_ node: Graph.Node, _ f: BinaryFunction, out: UnsafeMutablePointer<Float>,
                   batch: Int, k: Int, ws: GraphWorkspace) {
        let os = graph.values[node.output].shape
        let full = [batch, k] + os
        let r = os.count
        let ds = Strided.strides(of: full, broadcastTo: full)
        let (ia, ib) = (node.inputs[0], node.inputs[1])
        func primal(_ v: ValueID) -> StridedOperand {
            operand(v, pointer: data(v, ws), lead: [batch, k], isTangent: false, rank: r, outShape: full)
        }
        func tan(_ v: ValueID) -> StridedOperand? {
            tangent(v, ws).map { operand(v, pointer: $0, lead: [batch, k], isTangent: true, rank: r, outShape: full) }
        }
        let ta = tan(ia), tb = tan(ib)
        out.update(repeating: 0, count: full.elementCount)
        switch f {
        case .add:
            if let ta { Strided.apply(.copy, shape: full, dst: out, dstStrides: ds, accumulate: true, ta) }
            if let tb { Strided.apply(.copy, shape: full, dst: out, dstStrides: ds, accumulate: true, tb) }
        case .sub:
            if let ta { Strided.apply(.copy, shape: full, dst: out, dstStrides: ds, accumulate: true, ta) }
            if let tb { Strided.apply(.neg, shape: full, dst: out, dstStrides: ds, accumulate: true, tb) }
        case .mul:
            if let ta { Strided.apply(.mul, shape: full, dst: out, dstStrides: ds, accumulate: true, ta, primal(ib)) }
            if let tb { Strided.apply(.mul, shape: full, dst: out, dstStrides: ds, accumulate: true, primal(ia), tb) }
        case .div:
            if let ta { Strided.apply(.div, shape: full, dst: out, dstStrides: ds, accumulate: true, ta, primal(ib)) }
            if let tb {
                let z = operand(node.output, pointer: data(node.output, ws), lead: [batch, k], isTangent: false, rank: r, outShape: full)
                Strided.apply(.negMulDiv, shape: full, dst: out, dstStrides: ds, accumulate: true, z, tb, primal(ib))
            }
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
