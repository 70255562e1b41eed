#if canImport(Glibc)
import Glibc
#endif

/// Per-op import: each ONNX node becomes IR nodes, a folded constant, or an
/// alias. Axes of batched values are translated from ONNX axes (batch
/// included) to the IR's per-sample axes.
extension ONNXImporter {
    typealias Node = ONNXProtoModel.Node

    // MARK: Errors and attributes

    func unsupported(_ n: Node, _ detail: String) -> FlowError {
        .unsupported("node '\(currentNode)': op \(n.opType) (opset \(opset)): \(detail)")
    }
    func invalid(_ n: Node, _ detail: String) -> FlowError {
        .invalidModel("node '\(currentNode)': op \(n.opType): \(detail)")
    }

    func int(_ n: Node, _ name: String, _ fallback: Int64) throws -> Int64 {
        guard let a = n.attributes[name] else { return fallback }
        guard let v = a.i else { throw invalid(n, "attribute '\(name)' is not an integer") }
        return v
    }
    func float(_ n: Node, _ name: String, _ fallback: Float) throws -> Float {
        guard let a = n.attributes[name] else { return fallback }
        guard let v = a.f else { throw invalid(n, "attribute '\(name)' is not a float") }
        return v
    }
    func ints(_ n: Node, _ name: String) -> [Int64]? { n.attributes[name]?.ints }

    // MARK: Inputs

    func input(_ n: Node, _ i: Int) throws -> Imported {
        guard i < n.inputs.count, !n.inputs[i].isEmpty else { throw invalid(n, "missing input \(i)") }
        guard let v = values[n.inputs[i]] else {
            throw invalid(n, "input '\(n.inputs[i])' is not defined before use (graph not topologically sorted, or undefined)")
        }
        return v
    }
    func optionalInput(_ n: Node, _ i: Int) throws -> Imported? {
        guard i < n.inputs.count, !n.inputs[i].isEmpty else { return nil }
        return try input(n, i)
    }
    /// An input that must be an integer constant without the batch symbol.
    func knownInts(_ n: Node, _ i: Int, _ what: String) throws -> [Int64] {
        guard case .ints(let c) = try input(n, i) else { throw unsupported(n, "\(what) must be an integer constant") }
        guard let k = c.knownValues else { throw unsupported(n, "\(what) depends on the batch size") }
        return k
    }
    func floatConstant(_ n: Node, _ i: Int, _ what: String) throws -> Tensor {
        switch try input(n, i) {
        case .float(let t, _): return t
        default: throw unsupported(n, "\(what) must be a float constant")
        }
    }

    /// The ONNX rank and per-sample shape of a batched value.
    func onnxRank(_ id: ValueID, _ batchAxis: Bool) -> Int { builder.shape(of: id).count + (batchAxis ? 1 : 0) }

    /// A per-sample axis from an ONNX axis of a batched value.
    func sampleAxis(_ n: Node, _ axis: Int64, rank: Int, batchAxis: Bool) throws -> Int {
        let a = axis < 0 ? axis + Int64(rank) : axis
        guard a >= 0 && a < Int64(rank) else { throw invalid(n, "axis \(axis) out of range for rank \(rank)") }
        if batchAxis {
            guard a > 0 else { throw unsupported(n, "an operation along the batch axis") }
            return Int(a) - 1
        }
        return Int(a)
    }

    mutating func set(_ n: Node, _ v: Imported, output: Int = 0) throws {
        guard output < n.outputs.count else { throw invalid(n, "missing output \(output)") }
        values[n.outputs[output]] = v
    }

    mutating func param(_ t: Tensor, trainable: Bool, _ name: String) -> ValueID {
        builder.parameter(name, t, trainable: trainable)
    }

    // MARK: Dispatch

    mutating func importNode(_ n: Node, index: Int) throws {
        switch n.opType {
        case "Constant": try set(n, try constantNode(n))
        case "Identity", "Dropout":
            try set(n, try input(n, 0))
        case "Cast": try cast(n)
        case "Gemm": try gemm(n, index: index)
        case "MatMul": try matMul(n, index: index)
        case "Add", "Sub", "Mul", "Div":
            if try fuseStandaloneActivation(n, index: index) { return }
            try binary(n, BinaryFunction(rawValue: n.opType)!)
        case "Pow": try pow(n)
        case "Relu", "Tanh", "Sigmoid", "Erf", "Exp", "Log", "Sqrt", "Neg", "Sin", "Cos", "Abs", "Reciprocal",
             "LeakyRelu", "Elu", "Selu", "Softplus", "Gelu":
            if try fuseStandaloneActivation(n, index: index) { return }
            try unary(n, try unaryFunction(n))
        case "Concat": try concat(n)
        case "Unsqueeze", "Squeeze": try squeeze(n, unsqueeze: n.opType == "Unsqueeze")
        case "Reshape": try reshape(n)
        case "Flatten": try flatten(n)
        case "Expand": try expand(n)
        case "Shape": try shapeOf(n)
        case "Gather": try gather(n)
        case "ConstantOfShape": try constantOfShape(n)
        case "Equal", "Greater", "Less": try compare(n)
        case "Where": try whereNode(n)
        case "LayerNormalization": try layerNorm(n)
        case "ReduceMean", "ReduceSum":
            if n.opType == "ReduceMean", try fuseLayerNorm(n, index: index) { return }
            try reduce(n)
        default:
            throw unsupported(n, "this op is not supported")
        }
    }

    // MARK: Constants

    func constantNode(_ n: Node) throws -> Imported {
        if let a = n.attributes["value"] {
            guard let t = a.t else { throw invalid(n, "attribute 'value' is not a tensor") }
            switch try ONNXTensorDecoding.decode(t, directory: directory) {
            case .float(let f): return .float(f, trainable: false)
            case .ints(let i): return .ints(i)
            }
        }
        if let a = n.attributes["value_float"], let f = a.f { return .float(Tensor(shape: [], scalars: [f]), trainable: false) }
        if let a = n.attributes["value_floats"] { return .float(Tensor(shape: [a.floats.count], scalars: a.floats), trainable: false) }
        if let a = n.attributes["value_int"], let i = a.i { return .ints(IntConstant(shape: [], values: [.known(i)])) }
        if let a = n.attributes["value_ints"] { return .ints(IntConstant(shape: [a.ints.count], values: a.ints.map { .known($0) })) }
        throw unsupported(n, "only value, value_float(s) and value_int(s) constants are supported")
    }

    mutating func cast(_ n: Node) throws {
        let to = try int(n, "to", 0)
        let toFloat = to == 1 || to == 11 || to == 10
        let toInt = [2, 3, 4, 5, 6, 7, 9, 12, 13].contains(to)
        guard toFloat || toInt else { throw unsupported(n, "cast to \(ONNXTensorDecoding.typeName(Int32(truncatingIfNeeded: to)))") }
        switch try input(n, 0) {
        case .batched(let id, let axis):
            guard toFloat else { throw unsupported(n, "casting a batched float value to an integer type") }
            try set(n, .batched(id, batchAxis: axis))
        case .float(let t, _):
            if toFloat { try set(n, .float(t, trainable: false)); return }
            var out = [SymbolicInt]()
            for v in t.scalars {
                guard v.isFinite, abs(v) < 9e18 else { throw invalid(n, "cannot cast \(v) to an integer") }
                out.append(.known(to == 9 ? (v != 0 ? 1 : 0) : Int64(v)))
            }
            try set(n, .ints(IntConstant(shape: t.shape, values: out)))
        case .ints(let c):
            if toInt {
                try set(n, .ints(to == 9 ? IntConstant(shape: c.shape, values: c.values.map { $0 == .known(0) ? .known(0) : .known(1) }) : c))
                return
            }
            guard let k = c.knownValues else { throw unsupported(n, "casting the batch size to float") }
            try set(n, .float(Tensor(shape: c.shape, scalars: k.map { Float($0) }), trainable: false))
        }
    }

    // MARK: Linear layers

    /// Gemm: Y = alpha · A · op(B) + beta · C with A batched, B and C constant.
    mutating func gemm(_ n: Node, index: Int) throws {
        guard try int(n, "transA", 0) == 0 else { throw unsupported(n, "transA = 1 (the batched operand must not be transposed)") }
        let transB = try int(n, "transB", 0) != 0
        let alpha = try float(n, "alpha", 1), beta = try float(n, "beta", 1)
        guard case .batched(let a, true) = try input(n, 0) else {
            throw unsupported(n, "input A must be a batched value [batch, in]")
        }
        guard builder.shape(of: a).count == 1 else { throw invalid(n, "A must be 2-D, got per-sample shape \(builder.shape(of: a))") }
        guard case .float(var w, let trainable) = try input(n, 1) else { throw unsupported(n, "input B must be a float constant") }
        guard w.rank == 2 else { throw invalid(n, "B must be 2-D, got \(w.shape)") }
        if alpha != 1 { w.scalars = w.scalars.map { $0 * alpha } }
        let outDim = transB ? w.shape[0] : w.shape[1]
        var bias: Tensor?
        if let c = try optionalInput(n, 2) {
            guard case .float(var ct, _) = c else { throw unsupported(n, "input C must be a float constant") }
            if beta != 1 { ct.scalars = ct.scalars.map { $0 * beta } }
            bias = try biasVector(n, ct, outDim)
        }
        try emitLinear(n, index: index, x: a, weight: w, trainable: trainable, transposed: transB, bias: bias)
    }

    /// MatMul(A batched, B constant 2-D), fused with a following bias Add.
    mutating func matMul(_ n: Node, index: Int) throws {
        guard case .batched(let a, true) = try input(n, 0) else {
            if case .float = try input(n, 0), case .float = try input(n, 1) { throw unsupported(n, "MatMul of two constants") }
            throw unsupported(n, "input A must be a batched value [batch, ..., in]")
        }
        guard case .float(let w, let trainable) = try input(n, 1), w.rank == 2 else {
            throw unsupported(n, "input B must be a 2-D float constant")
        }
        try emitLinear(n, index: index, x: a, weight: w, trainable: trainable, transposed: false, bias: nil)
    }

    func biasVector(_ n: Node, _ c: Tensor, _ outDim: Int) throws -> Tensor {
        if c.count == outDim && c.shape.filter({ $0 != 1 }).count <= 1 { return c.reshaped([outDim]) }
        if c.count == 1 { return Tensor(shape: [outDim], repeating: c.scalars[0]) }
        throw FlowError.shapeMismatch("node '\(currentNode)': bias of shape \(c.shape) does not broadcast to [\(outDim)]")
    }

    /// Emits one `.linear` node, absorbing a following bias Add (when the
    /// layer had none) and a following activation pattern.
    mutating func emitLinear(_ n: Node, index: Int, x: ValueID, weight: Tensor, trainable: Bool,
                             transposed: Bool, bias: Tensor?) throws {
        var bias = bias
        var out = n.outputs.first ?? ""
        var bodyNodes: [Int] = []
        let outDim = transposed ? weight.shape[0] : weight.shape[1]
        if bias == nil, let (addIndex, b) = biasAdd(after: out, outDim: outDim) {
            bias = b
            bodyNodes.append(addIndex)
            out = proto.graph.nodes[addIndex].outputs[0]
        }
        var activation = UnaryFunction.identity
        if let m = matchActivation(from: out, exclusive: true) {
            activation = m.function
            bodyNodes += m.nodes
            out = m.output
        }
        let name = n.name.isEmpty ? out : n.name
        var inputs = [x, param(weight, trainable: trainable, name + ".weight")]
        if let bias { inputs.append(param(bias, trainable: true, name + ".bias")) }
        let y = try builder.apply(.linear(weightTransposed: transposed, activation: activation), inputs, name: name)
        values[out] = .batched(y, batchAxis: true)
        done.formUnion(bodyNodes)
    }

    /// An `Add(value, constant [out])` that is the only reader of `value`.
    func biasAdd(after value: String, outDim: Int) -> (Int, Tensor)? {
        guard let r = readers[value], r.count == 1, r[0] >= 0 else { return nil }
        let add = proto.graph.nodes[r[0]]
        guard add.opType == "Add", add.inputs.count == 2 else { return nil }
        let other = add.inputs[0] == value ? add.inputs[1] : add.inputs[0]
        guard case .float(let c, _)? = values[other], c.count == outDim,
              c.shape.filter({ $0 != 1 }).count <= 1, c.rank <= 1 || c.shape.dropLast().allSatisfy({ $0 == 1 }) else { return nil }
        return (r[0], c.reshaped([outDim]))
    }

    // MARK: Elementwise

    func unaryFunction(_ n: Node) throws -> UnaryFunction {
        switch n.opType {
        case "Relu": return .relu
        case "Tanh": return .tanh
        case "Sigmoid": return .sigmoid
        case "Erf": return .erf
        case "Exp": return .exp
        case "Log": return .log
        case "Sqrt": return .sqrt
        case "Neg": return .neg
        case "Sin": return .sin
        case "Cos": return .cos
        case "Abs": return .abs
        case "Reciprocal": return .reciprocal
        case "LeakyRelu": return .leakyRelu(slope: try float(n, "alpha", 0.01))
        case "Elu": return .elu(alpha: try float(n, "alpha", 1))
        case "Selu":
            let alpha = try float(n, "alpha", 1.67326319217681884765625)
            let gamma = try float(n, "gamma", 1.05070102214813232421875)
            guard abs(alpha - 1.6732632) < 1e-5, abs(gamma - 1.0507010) < 1e-5 else {
                throw unsupported(n, "Selu with alpha \(alpha), gamma \(gamma) (only the standard constants)")
            }
            return .selu
        case "Softplus": return .softplus(beta: 1, threshold: .infinity)
        case "Gelu":
            let approximate = n.attributes["approximate"]?.s ?? "none"
            switch approximate {
            case "none": return .gelu
            case "tanh": return .geluTanh
            default: throw unsupported(n, "Gelu approximate='\(approximate)'")
            }
        default: throw unsupported(n, "not a pointwise function")
        }
    }

    mutating func unary(_ n: Node, _ f: UnaryFunction) throws {
        switch try input(n, 0) {
        case .batched(let id, let axis):
            try set(n, .batched(try builder.apply(.unary(f), [id], name: currentNode), batchAxis: axis))
        case .float(let t, _):
            try set(n, .float(Tensor(shape: t.shape, scalars: t.scalars.map { f($0) }), trainable: false))
        case .ints:
            throw unsupported(n, "on an integer tensor")
        }
    }

    mutating func pow(_ n: Node) throws {
        let base = try input(n, 0)
        guard case .float(let e, _) = try input(n, 1), e.count == 1 else {
            throw unsupported(n, "the exponent must be a scalar float constant")
        }
        let p = e.scalars[0]
        switch base {
        case .batched:
            let f: UnaryFunction = p == 2 ? .square : p == 0.5 ? .sqrt : p == 1 ? .identity : p == -1 ? .reciprocal : .pow(p)
            try unary(n, f)
        case .float(let t, _):
            try set(n, .float(Tensor(shape: t.shape, scalars: t.scalars.map { Float(Glibc.pow(Double($0), Double(p))) }), trainable: false))
        case .ints:
            throw unsupported(n, "on an integer tensor")
        }
    }

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
            try set(n, .batched(try builder.apply(.binary(f), ids, name: currentNode), batchAxis: axis))
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
            case (.batch, .known(let q)) where (f == .mul || f == .div) && q == 1, (.batch, .known(let q)) where (f == .add || f == .sub) && q == 0:
                out.append(.batch)
            case (.known(let p), .batch) where (f == .mul && p == 1) || (f == .add && p == 0):
                out.append(.batch)
            default:
                throw unsupported(n, "integer arithmetic on the batch size (\(a) \(f.rawValue) \(b))")
            }
        }
        return IntConstant(shape: shape, values: out)
    }
}

