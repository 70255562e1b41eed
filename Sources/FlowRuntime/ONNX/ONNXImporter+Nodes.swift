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
        if case .batched(let id, true) = v, let p = batchPositions[id], !Self.batchMovingOps.contains(n.opType) {
            throw unsupported(n, "input '\(n.inputs[i])' has its batch axis at position \(p) (moved there by a Transpose); only Transpose, Slice, Split, Gather and Squeeze/Unsqueeze take such values")
        }
        if case .batched(let id, true) = v, let m = mergedAxes[id], !Self.mergedBatchOps.contains(n.opType) {
            throw unsupported(n, "input '\(n.inputs[i])' merges the batch axis with \(m) other axes (a Reshape to [-1, …]); only MatMul, Einsum, Softmax, Transpose, Reshape, Slice, Split and elementwise arithmetic take such values")
        }
        return v
    }

    /// Ops that handle values whose batch axis merges other axes.
    static let mergedBatchOps: Set<String> = ["MatMul", "Softmax", "Transpose", "Reshape", "Add", "Sub", "Mul", "Div", "Cast",
                                              "Identity", "Split", "Slice", "Einsum"]

    /// Gives `y` the merge of its batched inputs (all must agree).
    mutating func propagateMerge(_ n: Node, from inputs: [ValueID], to y: ValueID) throws {
        let merges = Set(inputs.filter { builder.isBatched($0) }.map { mergedAxes[$0] ?? 0 })
        guard merges.count <= 1 else { throw unsupported(n, "operands with different batch-axis merges") }
        if let m = merges.first, m > 0 { mergedAxes[y] = m }
    }

    /// Ops that handle values whose batch axis is not first.
    static let batchMovingOps: Set<String> = ["Transpose", "Slice", "Split", "Squeeze", "Unsqueeze", "Gather", "GatherND"]

    /// The ONNX position of a batched value's batch axis (0 unless moved).
    func batchPosition(_ id: ValueID) -> Int { batchPositions[id] ?? 0 }

    /// Records the ONNX batch position of a new value.
    mutating func setBatchPosition(_ id: ValueID, _ p: Int) {
        if p == 0 { batchPositions[id] = nil } else { batchPositions[id] = p }
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
    func onnxRank(_ id: ValueID, _ batchAxis: Bool) -> Int {
        builder.shape(of: id).count + (batchAxis ? 1 - (mergedAxes[id] ?? 0) : 0)
    }

    /// A per-sample axis from an ONNX axis of a batched value (`merged`:
    /// per-sample axes merged into its batch axis, see `mergedAxes`).
    func sampleAxis(_ n: Node, _ axis: Int64, rank: Int, batchAxis: Bool, merged: Int = 0) throws -> Int {
        let a = axis < 0 ? axis + Int64(rank) : axis
        guard a >= 0 && a < Int64(rank) else { throw invalid(n, "axis \(axis) out of range for rank \(rank)") }
        if batchAxis {
            guard a > 0 else { throw unsupported(n, "an operation along the batch axis") }
            return Int(a) - 1 + merged
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

    /// Every ONNX op type FlowRuntime imports, with its rule: the ops'
    /// own (`GraphOp.onnxImports`) and the constant-only ones.
    static let rules: [String: ONNXImportRule] = {
        var table = constantImports
        for op in OpRegistry.types {
            for (name, rule) in op.onnxImports {
                precondition(table[name] == nil, "ONNX op \(name) registered twice")
                table[name] = rule
            }
        }
        return table
    }()

    mutating func importNode(_ n: Node, index: Int) throws {
        guard let rule = Self.rules[n.opType] else { throw unsupported(n, "this op is not supported") }
        try rule(&self, n, index)
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
            // Integer contexts (class labels) are carried as exact floats.
            guard toFloat || id == builder.context else { throw unsupported(n, "casting a batched float value to an integer type") }
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
}
