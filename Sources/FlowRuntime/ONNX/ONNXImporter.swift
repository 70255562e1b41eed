/// Options for importing an ONNX velocity network.
public struct ONNXImportOptions: Sendable, Equatable {
    /// Name of the graph input holding x `[batch, d]`; nil: matched by role.
    public var xName: String?
    /// Name of the graph input holding t (`[batch, 1]`, `[batch]` or a
    /// scalar); nil: matched by role.
    public var tName: String?
    /// Name of the graph input holding a context (`[batch, m]` floats, or
    /// `[batch]` integer class labels); nil: matched by role (the input
    /// that is neither x nor t).
    public var contextName: String?
    public init(xName: String? = nil, tName: String? = nil, contextName: String? = nil) {
        self.xName = xName
        self.tName = tName
        self.contextName = contextName
    }
}

extension Model {
    /// Imports an ONNX velocity network v(t, x) from a file. External data
    /// (`*.onnx.data`) is read relative to the file's folder.
    ///
    /// Inputs are matched by role: x `[batch, d]` and t (`[batch, 1]`,
    /// `[batch]` or a scalar broadcast over the batch), or one input holding
    /// `[x, t]` (`[batch, d + 1]`); `options` may name them. The output must
    /// be `[batch, d]`. Shape-only subgraphs are folded with the batch
    /// symbolic; Gemm/MatMul + bias + activation and the exporters' SiLU,
    /// GELU and Softplus expansions become single IR nodes. The file's
    /// `metadata_props` become `metadata`.
    /// - Throws: `.io` (unreadable file or external data), `.invalidModel`
    ///   (malformed protobuf, inconsistent graph), `.unsupported` (an op,
    ///   attribute or dtype FlowRuntime does not implement, naming the op,
    ///   node and opset), `.shapeMismatch`.
    /// - Complexity: O(file size + weights).
    public static func loadONNX(path: String, options: ONNXImportOptions = .init()) throws -> Model {
        let bytes = try FileIO.read(path)
        return try bytes.withUnsafeBytes {
            try loadONNX(bytes: $0, directory: FileIO.directory(of: path), options: options)
        }
    }

    /// Imports an ONNX velocity network from serialized bytes (as
    /// `loadONNX(path:)`). External data is read relative to `directory`;
    /// without one, a model with external data is an error.
    public static func loadONNX(bytes: UnsafeRawBufferPointer, directory: String? = nil,
                                options: ONNXImportOptions = .init()) throws -> Model {
        let proto = try ONNXProtoModel.parse(bytes)
        var importer = try ONNXImporter(proto: proto, directory: directory, options: options)
        let graph = try importer.run()
        var metadata: [String: String] = [:]
        for (k, v) in proto.metadata { metadata[k] = v }
        return try Model(graph: graph, metadata: metadata)
    }
}

/// Converts a parsed ONNX graph into the IR through `GraphBuilder`.
struct ONNXImporter {
    /// What an ONNX value name stands for during import.
    enum Imported {
        /// A float constant (ONNX shape = tensor shape); `trainable` for
        /// initializers, false for folded constants.
        case float(Tensor, trainable: Bool)
        /// An integer/boolean constant, possibly holding the batch symbol.
        case ints(IntConstant)
        /// A graph value. `batchAxis`: whether its ONNX shape is
        /// `[batch] + per-sample shape` (true) or just the per-sample shape
        /// (a scalar t broadcast over the batch, and what derives from it).
        case batched(ValueID, batchAxis: Bool)
    }

    let proto: ONNXProtoModel
    let directory: String?
    let opset: Int64
    var builder: GraphBuilder
    var values: [String: Imported] = [:]
    /// For each value name, the indices of the nodes that read it (graph
    /// outputs count as a reader with index -1).
    var readers: [String: [Int]] = [:]
    /// Nodes already handled by a fused pattern.
    var done = Set<Int>()
    var currentNode = ""
    /// ONNX position of the batch axis of values whose batch axis a
    /// Transpose moved off the front (attention's qkv [3, batch, …]); the IR
    /// value holds the other axes in ONNX order. Absent: position 0.
    var batchPositions: [ValueID: Int] = [:]
    /// Values whose ONNX batch axis is the batch merged with their first m
    /// per-sample axes (the dynamo exporter's [batch·heads, T, d] views
    /// around batched matrix products): value id → m. The IR value keeps
    /// the unmerged per-sample shape; the memory layout is the same.
    var mergedAxes: [ValueID: Int] = [:]

    init(proto: ONNXProtoModel, directory: String?, options: ONNXImportOptions) throws {
        self.proto = proto
        self.directory = directory
        guard let opset = proto.opsets[""] else {
            throw FlowError.invalidModel("the model imports no default-domain (ai.onnx) opset")
        }
        guard opset >= 7 && opset <= 23 else {
            throw FlowError.unsupported("ai.onnx opset \(opset) is not supported (7...23)")
        }
        self.opset = opset
        let g = proto.graph
        guard g.nodes.count <= 1 << 20, g.initializers.count <= 1 << 20 else {
            throw FlowError.invalidModel("the graph has too many nodes or initializers")
        }
        try Self.checkSupported(g, opset: opset)
        // Static single assignment: every node defines at least one output,
        // and no name is defined twice (the pattern matchers rely on it).
        var defined = Set(g.initializers.map(\.name)).union(g.inputs.map(\.name))
        for (i, n) in g.nodes.enumerated() {
            guard let first = n.outputs.first, !first.isEmpty else {
                throw FlowError.invalidModel("node \(i) '\(n.name)' (\(n.opType)) has no output")
            }
            for o in n.outputs where !o.isEmpty {
                guard defined.insert(o).inserted else {
                    throw FlowError.invalidModel("node \(i) '\(n.name)' (\(n.opType)) redefines value '\(o)'")
                }
            }
        }
        var initial: [String: Imported] = [:]
        // Initializers FlowRuntime exported as constants (time frequencies,
        // epsilons) stay constants; every other float initializer is a weight.
        let constants = Set((proto.metadata.first { $0.key == Self.constantsKey }?.value ?? "")
            .split(separator: "\n").map(String.init))
        for t in g.initializers {
            switch try ONNXTensorDecoding.decode(t, directory: directory) {
            case .float(let tensor): initial[t.name] = .float(tensor, trainable: !constants.contains(t.name))
            case .ints(let ints): initial[t.name] = .ints(ints)
            }
        }
        builder = try Self.makeBuilder(g, initializers: Set(initial.keys), options: options, values: &initial)
        values = initial
        for (i, n) in g.nodes.enumerated() { for name in n.inputs where !name.isEmpty { readers[name, default: []].append(i) } }
        for o in g.outputs { readers[o.name, default: []].append(-1) }
    }

    /// Imports every node and finishes the graph at the single output.
    mutating func run() throws -> Graph {
        let g = proto.graph
        // Constant nodes have no inputs: evaluate them first so patterns can
        // read constants defined later in the node list (the legacy exporter
        // interleaves them).
        for (i, n) in g.nodes.enumerated() where n.opType == "Constant" && n.domain.isEmpty {
            currentNode = n.name
            try importNode(n, index: i)
            done.insert(i)
        }
        for (i, n) in g.nodes.enumerated() where !done.contains(i) {
            currentNode = n.name.isEmpty ? "\(n.opType)_\(i)" : n.name
            guard n.domain.isEmpty || n.domain == "ai.onnx" else {
                throw FlowError.unsupported("node '\(currentNode)': op \(n.domain).\(n.opType) (domain '\(n.domain)') is not supported")
            }
            try importNode(n, index: i)
            done.insert(i)
        }
        guard g.outputs.count == 1 else {
            throw FlowError.unsupported("the graph has \(g.outputs.count) outputs; a velocity network has one ([batch, d])")
        }
        let name = g.outputs[0].name
        guard let out = values[name] else { throw FlowError.invalidModel("the output '\(name)' is never computed") }
        guard case .batched(let id, true) = out else {
            throw FlowError.shapeMismatch("the output '\(name)' does not have a batch axis")
        }
        var graph = try builder.finish(output: id)
        // The output keeps its ONNX name (IR values are named after nodes).
        if !graph.values.contains(where: { $0.name == name }) { graph.values[graph.output].name = name }
        return graph
    }

    /// Lists every node whose op FlowRuntime does not import, all at once
    /// (op, node and opset), before anything else can fail on them.
    static func checkSupported(_ g: ONNXProtoModel.Graph, opset: Int64) throws {
        var missing: [String] = []
        for (i, n) in g.nodes.enumerated() {
            let name = n.name.isEmpty ? "\(n.opType)_\(i)" : n.name
            if !(n.domain.isEmpty || n.domain == "ai.onnx") {
                missing.append("\(n.domain).\(n.opType) (node '\(name)', domain '\(n.domain)')")
            } else if rules[n.opType] == nil {
                missing.append("\(n.opType) (node '\(name)', opset \(opset))")
            }
        }
        guard missing.isEmpty else {
            let shown = missing.prefix(20).joined(separator: "; ")
            let more = missing.count > 20 ? "; and \(missing.count - 20) more" : ""
            throw FlowError.unsupported("unsupported ops: \(shown)\(more)")
        }
    }

    // MARK: Inputs by role

    /// Metadata key listing (newline-separated) the float initializers that
    /// are constants, not trainable weights.
    static let constantsKey = "flowrt.constant_initializers"

    private static let timeNames: Set<String> = ["t", "time", "times", "timestep", "timesteps", "tau", "s"]

    /// ONNX element types a context may have: float32, int32, int64.
    private static let contextTypes: Set<Int32> = [1, 6, 7]

    private static func makeBuilder(_ g: ONNXProtoModel.Graph, initializers: Set<String>, options: ONNXImportOptions,
                                    values: inout [String: Imported]) throws -> GraphBuilder {
        let inputs = g.inputs.filter { !initializers.contains($0.name) }
        func find(_ name: String) throws -> ONNXProtoModel.ValueInfo {
            guard let v = inputs.first(where: { $0.name == name }) else {
                throw FlowError.invalidArgument("the model has no input '\(name)' (inputs: \(inputs.map(\.name)))")
            }
            return v
        }
        func dims(_ v: ONNXProtoModel.ValueInfo) throws -> [Int64?] {
            guard let d = v.dims else { throw FlowError.invalidModel("input '\(v.name)' has no shape") }
            return d
        }
        func describe(_ d: [Int64?]) -> String { "[\(d.map { $0.map(String.init) ?? "?" }.joined(separator: ", "))]" }
        /// The per-sample shape of an input `[batch, ...]` with fixed trailing extents.
        func sampleShape(_ v: ONNXProtoModel.ValueInfo, role: String) throws -> [Int] {
            let d = try dims(v)
            let rest = d.dropFirst()
            guard d.count >= 2, d.count <= 6, rest.allSatisfy({ $0 != nil && $0! >= 1 && $0! <= 1 << 20 }),
                  rest.reduce(Int64(1), { $0 * $1! }) <= 1 << 24 else {
                throw FlowError.unsupported("input '\(v.name)' (\(role)) has shape \(describe(d)); expected [batch, ...] with fixed per-sample extents")
            }
            return rest.map { Int($0!) }
        }
        func requireFloat(_ v: ONNXProtoModel.ValueInfo, _ role: String) throws {
            guard v.elementType == 1 else {
                throw FlowError.unsupported(
                    "input '\(v.name)' (\(role)) has element type \(ONNXTensorDecoding.typeName(v.elementType ?? 0)); FlowRuntime takes float32 for it")
            }
        }
        if inputs.count == 1 && options.tName == nil {
            // One input [batch, d + 1] = concat(x, t).
            let v = inputs[0]
            if let n = options.xName, n != v.name { _ = try find(n) }
            try requireFloat(v, "[x, t]")
            let shape = try sampleShape(v, role: "[x, t]")
            guard shape.count == 1, shape[0] >= 2 else {
                throw FlowError.unsupported("the single input '\(v.name)' must hold [x, t]: [batch, d + 1] with d ≥ 1")
            }
            var b = GraphBuilder(dimension: shape[0] - 1, timeShape: [1], xName: v.name + ".x", tName: v.name + ".t")
            let xt = try b.concat([b.x, b.t], axis: -1, name: v.name)
            values[v.name] = .batched(xt, batchAxis: true)
            return b
        }
        guard inputs.count == 2 || inputs.count == 3 else {
            throw FlowError.unsupported("the model has \(inputs.count) inputs \(inputs.map(\.name)); expected x and t (and optionally a context), or one [x, t] input")
        }
        // Named inputs first, then roles: t by name or rank ≤ 1 (or [batch, 1]),
        // x the float input of highest rank, the context what remains.
        var x = try options.xName.map(find), t = try options.tName.map(find), c = try options.contextName.map(find)
        var rest = inputs.filter { v in ![x, t, c].contains { $0?.name == v.name } }
        func rank(_ v: ONNXProtoModel.ValueInfo) -> Int { v.dims?.count ?? 2 }
        func take(_ pick: (ONNXProtoModel.ValueInfo) -> Bool) -> ONNXProtoModel.ValueInfo? {
            guard let i = rest.firstIndex(where: pick) else { return nil }
            return rest.remove(at: i)
        }
        if t == nil {
            t = take { Self.timeNames.contains($0.name.lowercased()) && $0.elementType == 1 }
                ?? take { $0.elementType == 1 && rank($0) <= 1 && rest.count > (c == nil ? 1 : 0) && !Self.contextNames.contains($0.name.lowercased()) }
        }
        if x == nil {
            // The input of highest rank (its dtype is checked below).
            let candidates = rest.filter { !Self.contextNames.contains($0.name.lowercased()) }
            if let best = (candidates.isEmpty ? rest : candidates).max(by: { rank($0) < rank($1) }) { x = take { $0.name == best.name } }
        }
        if t == nil { t = take { $0.elementType == 1 && (rank($0) <= 1 || (rank($0) == 2 && $0.dims?[1] == 1)) } }
        if c == nil && inputs.count == 3 { c = rest.first }
        guard let x, let t else {
            throw FlowError.unsupported("cannot tell x and t apart among inputs \(inputs.map(\.name)); name them in the import options")
        }
        guard x.name != t.name, c?.name != x.name, c?.name != t.name else {
            throw FlowError.invalidArgument("x, t and the context must be different inputs")
        }
        try requireFloat(x, "x")
        try requireFloat(t, "t")
        let shape = try sampleShape(x, role: "x")
        let td = try dims(t)
        let timeShape: [Int], batchAxis: Bool
        switch td.count {
        case 0: (timeShape, batchAxis) = ([], false)
        case 1: (timeShape, batchAxis) = ([], true)
        case 2 where td[1] == 1: (timeShape, batchAxis) = ([1], true)
        default:
            throw FlowError.unsupported("input '\(t.name)' (t) has shape \(describe(td)); expected [batch, 1], [batch] or a scalar")
        }
        var b = GraphBuilder(sampleShape: shape, timeShape: timeShape, xName: x.name, tName: t.name)
        values[x.name] = .batched(b.x, batchAxis: true)
        values[t.name] = .batched(b.t, batchAxis: batchAxis)
        if let c {
            guard let type = c.elementType, Self.contextTypes.contains(type) else {
                throw FlowError.unsupported("input '\(c.name)' (context) has element type \(ONNXTensorDecoding.typeName(c.elementType ?? 0)); expected float32, int32 or int64")
            }
            let cd = try dims(c)
            let cshape: [Int]
            if cd.count == 1 { cshape = [] }
            else { cshape = try sampleShape(c, role: "context") }
            guard type == 1 || cshape.isEmpty else {
                throw FlowError.unsupported("input '\(c.name)' (integer context) must be class labels [batch], got \(describe(cd))")
            }
            values[c.name] = .batched(b.addContext(shape: cshape, name: c.name), batchAxis: true)
        }
        return b
    }

    private static let contextNames: Set<String> = ["y", "c", "cond", "context", "label", "labels", "class_labels", "class", "classes", "obs"]
}
