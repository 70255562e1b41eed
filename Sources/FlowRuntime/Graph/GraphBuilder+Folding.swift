/// Constant folding helpers (each op folds itself through `GraphOp.fold`).
extension GraphBuilder {
    /// numpy-broadcast `a op b` on whole tensors.
    public static func broadcast(_ f: BinaryFunction, _ a: Tensor, _ b: Tensor, node: String = "") throws -> Tensor {
        guard let shape = ShapeInference.broadcast(a.shape, b.shape), let n = shape.checkedElementCount, n < (1 << 31) else {
            throw FlowError.shapeMismatch("node '\(node)': shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        var out = Tensor(shape: shape)
        let it = shape.isEmpty ? [1] : shape
        a.scalars.withUnsafeBufferPointer { pa in
            b.scalars.withUnsafeBufferPointer { pb in
                out.scalars.withUnsafeMutableBufferPointer { po in
                    Strided.apply(f.stridedOp, shape: it, dst: po.baseAddress!,
                                  dstStrides: Strided.strides(of: it, broadcastTo: it), accumulate: false,
                                  StridedOperand(pointer: pa.baseAddress!, strides: Strided.strides(of: a.shape, broadcastTo: it)),
                                  StridedOperand(pointer: pb.baseAddress!, strides: Strided.strides(of: b.shape, broadcastTo: it)))
                }
            }
        }
        return out
    }
}

/// Shorthands for common nodes.
extension GraphBuilder {
    public mutating func linear(_ x: ValueID, weight: Tensor, bias: Tensor?, activation: UnaryFunction = .identity,
                                name: String) throws -> ValueID {
        let w = parameter("\(name).weight", weight)
        var inputs = [x, w]
        if let bias { inputs.append(parameter("\(name).bias", bias)) }
        return try apply(.linear(weightTransposed: true, activation: activation), inputs, name: name)
    }
    public mutating func concat(_ values: [ValueID], axis: Int = -1, name: String? = nil) throws -> ValueID {
        try apply(.concat(axis: axis), values, name: name)
    }
    public mutating func add(_ a: ValueID, _ b: ValueID, name: String? = nil) throws -> ValueID {
        try apply(.binary(.add), [a, b], name: name)
    }
    public mutating func mul(_ a: ValueID, _ b: ValueID, name: String? = nil) throws -> ValueID {
        try apply(.binary(.mul), [a, b], name: name)
    }
    public mutating func unary(_ f: UnaryFunction, _ a: ValueID, name: String? = nil) throws -> ValueID {
        try apply(.unary(f), [a], name: name)
    }
}
