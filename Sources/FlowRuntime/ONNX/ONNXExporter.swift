/// Export of a `Model` as one self-contained ONNX file.
extension Model {
    /// The ONNX IR version of exported files (onnxruntime ≥ 1.12 and
    /// `onnx.checker` with `full_check` accept it).
    public static let onnxExportIRVersion: Int64 = 8
    /// The ai.onnx opset of exported files.
    public static let onnxExportOpset: Int64 = 17

    /// The network as a serialized ONNX model: inputs x `[batch] + sampleShape`
    /// (`[batch, d]` for vectors), t (`[batch, 1]`, or `[batch]` when the
    /// graph's t is per-sample `[]`) and, for a conditional network, the
    /// context (`[batch, m]`, or `[batch]` float class labels); output shaped
    /// like x, dynamic batch dimension "batch", weights inline,
    /// IR 8 / opset 17. `metadata_props` hold `metadata` (keys without the
    /// `flowrt.` prefix get it) plus `flowrt.dimension` and
    /// `flowrt.time_convention`.
    /// - Throws: nothing today: every op in `Graph/Ops` implements
    ///   `exportONNX`; an op added without one would throw `.unsupported`
    ///   (the `GraphOp` default), which the C header does not list.
    /// - Complexity: O(parameters).
    public func onnxData() throws -> [UInt8] {
        var exporter = ONNXExporter(graph: graph)
        let g = try exporter.run()
        var props: [String: String] = [:]
        for (k, v) in metadata { props[k.hasPrefix("flowrt.") ? k : "flowrt." + k] = v }
        props["flowrt.dimension"] = "\(dimension)"
        let constants = graph.values.compactMap { v -> String? in
            guard case .parameter(let i) = v.source, !graph.parameters[i].isTrainable,
                  graph.parameters[i].tensor.count > 1 else { return nil }
            return v.name
        }
        if !constants.isEmpty { props[ONNXImporter.constantsKey] = constants.joined(separator: "\n") }
        if graph.sampleShape.count > 1 { props["flowrt.sample_shape"] = graph.sampleShape.map(String.init).joined(separator: ",") }
        if let c = graph.context {
            props["flowrt.context_dim"] = "\(graph.contextDimension)"
            if graph.values[c].shape.isEmpty, let classes = embeddingClasses { props["flowrt.num_classes"] = "\(classes)" }
        }
        props["flowrt.time_convention"] = "t in [0,1], 0 = base, 1 = data"
        let model = ONNXProtoModel(
            irVersion: Self.onnxExportIRVersion, producer: "flowrt", opsets: ["": Self.onnxExportOpset], graph: g,
            metadata: props.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) })
        return model.serialized()
    }

    /// Rows of the table an integer (label) context indexes, if any.
    var embeddingClasses: Int? {
        guard let c = graph.context else { return nil }
        for node in graph.nodes where node.operation.as(EmbeddingOp.self) != nil && node.inputs[1] == c {
            return graph.values[node.inputs[0]].shape[0]
        }
        return nil
    }

    /// Writes `onnxData()` to `path` through a temporary file and a rename,
    /// so a failure never leaves a truncated file.
    /// - Throws: as `onnxData()`, and `.io` when the file cannot be written.
    public func saveONNX(path: String) throws {
        try FileIO.writeAtomically(try onnxData(), to: path)
    }
}

/// Translates IR nodes to ONNX nodes (opset 17): the graph's inputs,
/// outputs and initializers here, each node by its op (`GraphOp.exportONNX`).
struct ONNXExporter {
    typealias P = ONNXProtoModel
    let graph: Graph
    var nodes: [P.Node] = []
    var initializers: [P.Tensor] = []
    var taken: Set<String>
    var scalarNames: [Float: String] = [:]

    init(graph: Graph) {
        self.graph = graph
        taken = Set(graph.values.map(\.name))
    }

    mutating func fresh(_ base: String) -> String {
        var name = base, i = 1
        while taken.contains(name) { name = "\(base)_\(i)"; i += 1 }
        taken.insert(name)
        return name
    }

    func name(_ v: ValueID) -> String { graph.values[v].name }

    static func floatTensor(_ name: String, _ t: Tensor) -> P.Tensor {
        var raw = [UInt8]()
        raw.reserveCapacity(4 * t.count)
        for f in t.scalars { withUnsafeBytes(of: f.bitPattern.littleEndian) { raw += $0 } }
        return P.Tensor(name: name, dims: t.shape.map(Int64.init), dataType: 1, raw: raw, floats: [], int32s: [],
                        int64s: [], doubles: [], isExternal: false, external: [:])
    }

    mutating func int64Initializer(_ base: String, _ values: [Int64]) -> String {
        var raw = [UInt8]()
        for v in values { withUnsafeBytes(of: v.littleEndian) { raw += $0 } }
        let n = fresh(base)
        initializers.append(P.Tensor(name: n, dims: [Int64(values.count)], dataType: 7, raw: raw, floats: [], int32s: [],
                                     int64s: [], doubles: [], isExternal: false, external: [:]))
        return n
    }

    mutating func scalar(_ v: Float) -> String {
        if let n = scalarNames[v] { return n }
        let n = fresh("const_\(v)")
        initializers.append(Self.floatTensor(n, Tensor(shape: [], scalars: [v])))
        scalarNames[v] = n
        return n
    }

    mutating func node(_ op: String, _ inputs: [String], _ output: String, _ attributes: [String: P.Attribute] = [:]) {
        nodes.append(P.Node(opType: op, domain: "", name: fresh("\(output)/\(op)"), inputs: inputs, outputs: [output],
                            attributes: attributes))
    }


    mutating func run() throws -> P.Graph {
        for p in graph.values.indices {
            if case .parameter(let i) = graph.values[p].source {
                initializers.append(Self.floatTensor(name(p), graph.parameters[i].tensor))
            }
        }
        for n in graph.nodes { try n.operation.op.exportONNX(&self, n) }
        var outName = name(graph.output)
        if graph.output == graph.x || graph.output == graph.t {
            outName = fresh("v")
            node("Identity", [name(graph.output)], outName)
        }
        let sample: [Int64?] = [nil] + graph.sampleShape.map { Int64($0) }
        let tDims: [Int64?] = graph.values[graph.t].shape.isEmpty ? [nil] : [nil, 1]
        var inputs: [P.ValueInfo] = [.init(name: name(graph.x), elementType: 1, dims: sample),
                                     .init(name: name(graph.t), elementType: 1, dims: tDims)]
        if let c = graph.context {
            // Class labels travel as floats (exact integers); Embedding casts them.
            inputs.append(.init(name: name(c), elementType: 1, dims: [nil] + graph.values[c].shape.map { Int64($0) }))
        }
        return P.Graph(nodes: nodes, initializers: initializers, inputs: inputs,
                       outputs: [.init(name: outName, elementType: 1, dims: sample)])
    }

    /// The ONNX axis (batch included) of per-sample axis `a` of value `v`.
    func onnxAxis(_ a: Int, of v: ValueID) -> Int64 {
        let r = graph.values[v].shape.count
        return Int64((a < 0 ? a + r : a) + 1)
    }
}

extension ONNXProtoModel.Attribute {
    static func int(_ v: Int64) -> Self { .init(type: 2, f: nil, i: v, s: nil, t: nil, floats: [], ints: []) }
    static func float(_ v: Float) -> Self { .init(type: 1, f: v, i: nil, s: nil, t: nil, floats: [], ints: []) }
    static func ints(_ v: [Int64]) -> Self { .init(type: 7, f: nil, i: nil, s: nil, t: nil, floats: [], ints: v) }
    static func string(_ v: String) -> Self { .init(type: 3, f: nil, i: nil, s: v, t: nil, floats: [], ints: []) }
}
