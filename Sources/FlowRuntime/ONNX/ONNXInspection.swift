/// What an ONNX file holds, for `flowrt inspect`: its inputs and outputs,
/// an op histogram, the ops FlowRuntime does not import, and, when it
/// imports, the model's sample shape, parameter count and FLOPs per sample.
public struct ONNXInspection: Sendable {
    /// A graph input or output: name, element type name, dims (nil = symbolic).
    public struct Port: Sendable {
        public var name: String
        public var elementType: String
        public var dims: [Int64?]
    }
    public var irVersion: Int64
    public var producer: String
    /// Opset per domain ("" = ai.onnx).
    public var opsets: [String: Int64]
    public var inputs: [Port]
    public var outputs: [Port]
    /// Node count per op type (`domain.op` outside ai.onnx), sorted by count.
    public var opHistogram: [(op: String, count: Int)]
    /// Every node FlowRuntime cannot import: op, node and opset.
    public var unsupported: [String]
    /// The imported model, or why the import failed.
    public var model: Model?
    public var importError: String?

    /// Reads `path` (external data relative to its folder) and tries to import it.
    /// - Throws: `.io` or `.invalidModel` when the file is not an ONNX model at all.
    public init(path: String, options: ONNXImportOptions = .init()) throws {
        let bytes = try FileIO.read(path)
        let proto = try bytes.withUnsafeBytes { try ONNXProtoModel.parse($0) }
        irVersion = proto.irVersion
        producer = proto.producer
        opsets = proto.opsets
        let initializers = Set(proto.graph.initializers.map(\.name))
        func port(_ v: ONNXProtoModel.ValueInfo) -> Port {
            Port(name: v.name, elementType: ONNXTensorDecoding.typeName(v.elementType ?? 0), dims: v.dims ?? [])
        }
        inputs = proto.graph.inputs.filter { !initializers.contains($0.name) }.map(port)
        outputs = proto.graph.outputs.map(port)
        var counts: [String: Int] = [:]
        for n in proto.graph.nodes {
            counts[n.domain.isEmpty || n.domain == "ai.onnx" ? n.opType : "\(n.domain).\(n.opType)", default: 0] += 1
        }
        opHistogram = counts.map { (op: $0.key, count: $0.value) }.sorted { ($0.count, $1.op) > ($1.count, $0.op) }
        let opset = proto.opsets[""] ?? 0
        unsupported = proto.graph.nodes.enumerated().compactMap { i, n in
            let name = n.name.isEmpty ? "\(n.opType)_\(i)" : n.name
            if !(n.domain.isEmpty || n.domain == "ai.onnx") { return "\(n.domain).\(n.opType) (node '\(name)')" }
            return ONNXImporter.rules[n.opType] == nil ? "\(n.opType) (node '\(name)', opset \(opset))" : nil
        }
        do {
            model = try Model.loadONNX(path: path, options: options)
        } catch {
            importError = (error as? FlowError)?.message ?? "\(error)"
        }
    }

    /// The IR nodes of the imported model by kind, sorted by count.
    public var irHistogram: [(op: String, count: Int)] {
        guard let model else { return [] }
        var counts: [String: Int] = [:]
        for n in model.graph.nodes { counts[n.operation.kindName, default: 0] += 1 }
        return counts.map { (op: $0.key, count: $0.value) }.sorted { ($0.count, $1.op) > ($1.count, $0.op) }
    }
}
