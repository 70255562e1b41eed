/// Options for importing an ONNX velocity network.
public struct ONNXImportOptions: Sendable, Equatable {
    /// Name of the graph input holding x `[batch, d]`; nil: matched by role.
    public var xName: String?
    /// Name of the graph input holding t (`[batch, 1]`, `[batch]` or a
    /// scalar); nil: matched by role.
    public var tName: String?
    public init(xName: String? = nil, tName: String? = nil) {
        self.xName = xName
        self.tName = tName
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
        for t in g.initializers {
            switch try ONNXTensorDecoding.decode(t, directory: directory) {
            case .float(let tensor): initial[t.name] = .float(tensor, trainable: true)
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

    // MARK: Inputs by role

    private static let timeNames: Set<String> = ["t", "time", "times", "timestep", "timesteps", "tau", "s"]

    private static func makeBuilder(_ g: ONNXProtoModel.Graph, initializers: Set<String>, options: ONNXImportOptions,
                                    values: inout [String: Imported]) throws -> GraphBuilder {
        let inputs = g.inputs.filter { !initializers.contains($0.name) }
        for i in inputs where i.elementType != 1 {
            throw FlowError.unsupported(
                "input '\(i.name)' has element type \(ONNXTensorDecoding.typeName(i.elementType ?? 0)); FlowRuntime takes float32 inputs")
        }
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
        func featureCount(_ v: ONNXProtoModel.ValueInfo) throws -> Int {
            let d = try dims(v)
            guard d.count == 2, let n = d[1], n >= 1, n <= 1 << 20 else {
                throw FlowError.unsupported("input '\(v.name)' has shape \(d.map { $0.map(String.init) ?? "?" }); expected [batch, d] with a fixed d")
            }
            return Int(n)
        }
        if inputs.count == 1 && options.tName == nil {
            // One input [batch, d + 1] = concat(x, t).
            let v = inputs[0]
            if let n = options.xName, n != v.name { _ = try find(n) }
            let n = try featureCount(v)
            guard n >= 2 else { throw FlowError.unsupported("the single input '\(v.name)' must hold [x, t] with at least 2 features") }
            var b = GraphBuilder(dimension: n - 1, timeShape: [1], xName: v.name + ".x", tName: v.name + ".t")
            let xt = try b.concat([b.x, b.t], axis: -1, name: v.name)
            values[v.name] = .batched(xt, batchAxis: true)
            return b
        }
        guard inputs.count == 2 else {
            throw FlowError.unsupported("the model has \(inputs.count) inputs \(inputs.map(\.name)); expected x and t, or one [x, t] input")
        }
        var x: ONNXProtoModel.ValueInfo, t: ONNXProtoModel.ValueInfo
        if let xn = options.xName, let tn = options.tName { (x, t) = (try find(xn), try find(tn)) }
        else if let tn = options.tName { t = try find(tn); x = inputs.first { $0.name != tn }! }
        else if let xn = options.xName { x = try find(xn); t = inputs.first { $0.name != xn }! }
        else {
            let (a, b) = (inputs[0], inputs[1])
            let rank = { (v: ONNXProtoModel.ValueInfo) in v.dims?.count ?? 2 }
            if Self.timeNames.contains(b.name.lowercased()) { (x, t) = (a, b) }
            else if Self.timeNames.contains(a.name.lowercased()) { (x, t) = (b, a) }
            else if rank(a) < 2 && rank(b) == 2 { (x, t) = (b, a) }
            else { (x, t) = (a, b) }
        }
        guard x.name != t.name else { throw FlowError.invalidArgument("x and t name the same input '\(x.name)'") }
        let d = try featureCount(x)
        let td = try dims(t)
        let timeShape: [Int], batchAxis: Bool
        switch td.count {
        case 0: (timeShape, batchAxis) = ([], false)
        case 1: (timeShape, batchAxis) = ([], true)
        case 2 where td[1] == 1: (timeShape, batchAxis) = ([1], true)
        default:
            throw FlowError.unsupported("input '\(t.name)' (t) has shape \(td.map { $0.map(String.init) ?? "?" }); expected [batch, 1], [batch] or a scalar")
        }
        let b = GraphBuilder(dimension: d, timeShape: timeShape, xName: x.name, tName: t.name)
        values[x.name] = .batched(b.x, batchAxis: true)
        values[t.name] = .batched(b.t, batchAxis: batchAxis)
        return b
    }
}
