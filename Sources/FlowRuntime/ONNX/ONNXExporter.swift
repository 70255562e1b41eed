/// Export of a `Model` as one self-contained ONNX file.
extension Model {
    /// The ONNX IR version of exported files (onnxruntime ≥ 1.12 and
    /// `onnx.checker` with `full_check` accept it).
    public static let onnxExportIRVersion: Int64 = 8
    /// The ai.onnx opset of exported files.
    public static let onnxExportOpset: Int64 = 17

    /// The network as a serialized ONNX model: inputs x `[batch, d]` and t
    /// (`[batch, 1]`, or `[batch]` when the graph's t is per-sample `[]`),
    /// output `[batch, d]`, dynamic batch dimension "batch", weights inline,
    /// IR 8 / opset 17. `metadata_props` hold `metadata` (keys without the
    /// `flowrt.` prefix get it) plus `flowrt.dimension` and
    /// `flowrt.time_convention`.
    /// - Throws: `.unsupported` for an operation ONNX opset 17 cannot express.
    /// - Complexity: O(parameters).
    public func onnxData() throws -> [UInt8] {
        var exporter = ONNXExporter(graph: graph)
        let g = try exporter.run()
        var props: [String: String] = [:]
        for (k, v) in metadata { props[k.hasPrefix("flowrt.") ? k : "flowrt." + k] = v }
        props["flowrt.dimension"] = "\(dimension)"
        props["flowrt.time_convention"] = "t in [0,1], 0 = base, 1 = data"
        let model = ONNXProtoModel(
            irVersion: Self.onnxExportIRVersion, producer: "flowrt", opsets: ["": Self.onnxExportOpset], graph: g,
            metadata: props.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) })
        return model.serialized()
    }

    /// Writes `onnxData()` to `path` through a temporary file and a rename,
    /// so a failure never leaves a truncated file.
    /// - Throws: as `onnxData()`, and `.io` when the file cannot be written.
    public func saveONNX(path: String) throws {
        try FileIO.writeAtomically(try onnxData(), to: path)
    }
}

/// Translates IR nodes to ONNX nodes (opset 17).
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

    static func int(_ v: Int64) -> P.Attribute { .init(type: 2, f: nil, i: v, s: nil, t: nil, floats: [], ints: []) }
    static func float(_ v: Float) -> P.Attribute { .init(type: 1, f: v, i: nil, s: nil, t: nil, floats: [], ints: []) }
    static func ints(_ v: [Int64]) -> P.Attribute { .init(type: 7, f: nil, i: nil, s: nil, t: nil, floats: [], ints: v) }

    mutating func run() throws -> P.Graph {
        for p in graph.values.indices {
            if case .parameter(let i) = graph.values[p].source {
                initializers.append(Self.floatTensor(name(p), graph.parameters[i].tensor))
            }
        }
        for n in graph.nodes { try export(n) }
        var outName = name(graph.output)
        if graph.output == graph.x || graph.output == graph.t {
            outName = fresh("v")
            node("Identity", [name(graph.output)], outName)
        }
        let d = Int64(graph.dimension)
        let tDims: [Int64?] = graph.values[graph.t].shape.isEmpty ? [nil] : [nil, 1]
        return P.Graph(
            nodes: nodes, initializers: initializers,
            inputs: [.init(name: name(graph.x), elementType: 1, dims: [nil, d]),
                     .init(name: name(graph.t), elementType: 1, dims: tDims)],
            outputs: [.init(name: outName, elementType: 1, dims: [nil, d])])
    }

    /// The ONNX axis (batch included) of per-sample axis `a` of value `v`.
    func onnxAxis(_ a: Int, of v: ValueID) -> Int64 {
        let r = graph.values[v].shape.count
        return Int64((a < 0 ? a + r : a) + 1)
    }

    mutating func export(_ n: Graph.Node) throws {
        let out = name(n.output)
        let inputs = n.inputs.map(name)
        switch n.operation {
        case .linear(let transposed, let activation):
            let pre = activation == .identity ? out : fresh(out + "/linear")
            let x = n.inputs[0]
            if graph.values[x].shape.count == 1 {
                node("Gemm", inputs, pre, ["transB": Self.int(transposed ? 1 : 0), "alpha": Self.float(1), "beta": Self.float(1)])
            } else {
                var w = inputs[1]
                if transposed {
                    w = fresh(w + "/T")
                    node("Transpose", [inputs[1]], w, ["perm": Self.ints([1, 0])])
                }
                let mm = inputs.count == 3 ? fresh(out + "/matmul") : pre
                node("MatMul", [inputs[0], w], mm)
                if inputs.count == 3 { node("Add", [mm, inputs[2]], pre) }
            }
            if activation != .identity { try unary(activation, pre, out) }
        case .binary(let f):
            node(f.rawValue, inputs, out)
        case .unary(let f):
            try unary(f, inputs[0], out)
        case .concat(let axis):
            node("Concat", inputs, out, ["axis": Self.int(onnxAxis(axis, of: n.inputs[0]))])
        case .layerNorm(let axis, let eps):
            var ins = inputs
            let normalized = Array(graph.values[n.inputs[0]].shape[Int(onnxAxis(axis, of: n.inputs[0]) - 1)...])
            if ins.count == 1 {
                let ones = fresh(out + "/scale")
                initializers.append(Self.floatTensor(ones, Tensor(shape: normalized, repeating: 1)))
                ins.append(ones)
            }
            node("LayerNormalization", ins, out, ["axis": Self.int(onnxAxis(axis, of: n.inputs[0])), "epsilon": Self.float(eps)])
        case .reduceMean(let axes, let keep):
            node("ReduceMean", inputs, out, ["axes": Self.ints(axes.map { onnxAxis($0, of: n.inputs[0]) }),
                                             "keepdims": Self.int(keep ? 1 : 0)])
        case .reduceSum(let axes, let keep):
            let a = int64Initializer(out + "/axes", axes.map { onnxAxis($0, of: n.inputs[0]) })
            node("ReduceSum", inputs + [a], out, ["keepdims": Self.int(keep ? 1 : 0)])
        case .reshape(let shape):
            let s = int64Initializer(out + "/shape", [-1] + shape.map(Int64.init))
            node("Reshape", inputs + [s], out)
        }
    }

    /// Emits `f` from `x` to `y` with opset-17 ops.
    mutating func unary(_ f: UnaryFunction, _ x: String, _ y: String) throws {
        func tmp(_ s: String) -> String { fresh("\(y)/\(s)") }
        switch f {
        case .identity: node("Identity", [x], y)
        case .relu: node("Relu", [x], y)
        case .sigmoid: node("Sigmoid", [x], y)
        case .tanh: node("Tanh", [x], y)
        case .selu: node("Selu", [x], y)
        case .erf: node("Erf", [x], y)
        case .exp: node("Exp", [x], y)
        case .log: node("Log", [x], y)
        case .sqrt: node("Sqrt", [x], y)
        case .neg: node("Neg", [x], y)
        case .sin: node("Sin", [x], y)
        case .cos: node("Cos", [x], y)
        case .abs: node("Abs", [x], y)
        case .reciprocal: node("Reciprocal", [x], y)
        case .square: node("Mul", [x, x], y)
        case .pow(let p): node("Pow", [x, scalar(p)], y)
        case .leakyRelu(let slope): node("LeakyRelu", [x], y, ["alpha": Self.float(slope)])
        case .elu(let alpha): node("Elu", [x], y, ["alpha": Self.float(alpha)])
        case .silu:
            let s = tmp("sigmoid")
            node("Sigmoid", [x], s)
            node("Mul", [x, s], y)
        case .gelu:
            let a = tmp("scaled"), e = tmp("erf"), p = tmp("erf_plus_1"), q = tmp("x_times")
            node("Div", [x, scalar(Float(2).squareRoot())], a)
            node("Erf", [a], e)
            node("Add", [e, scalar(1)], p)
            node("Mul", [x, p], q)
            node("Mul", [q, scalar(0.5)], y)
        case .geluTanh:
            // 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
            let x2 = tmp("x2"), x3 = tmp("x3"), a = tmp("cubic"), b = tmp("inner"), c = tmp("scaled"),
                th = tmp("tanh"), p = tmp("tanh_plus_1"), q = tmp("x_times")
            node("Mul", [x, x], x2)
            node("Mul", [x2, x], x3)
            node("Mul", [x3, scalar(0.044715)], a)
            node("Add", [x, a], b)
            node("Mul", [b, scalar(Float((2 / Double.pi).squareRoot()))], c)
            node("Tanh", [c], th)
            node("Add", [th, scalar(1)], p)
            node("Mul", [x, p], q)
            node("Mul", [q, scalar(0.5)], y)
        case .softplus(let beta, let threshold):
            // (1/β) log(1 + exp(βx)), and x where βx > threshold.
            let bx = beta == 1 ? x : tmp("beta_x")
            if beta != 1 { node("Mul", [x, scalar(beta)], bx) }
            let finite = threshold.isFinite
            let sp = beta == 1 && !finite ? y : tmp("softplus")
            node("Softplus", [bx], sp)
            var smooth = sp
            if beta != 1 {
                smooth = finite ? tmp("scaled") : y
                node("Div", [sp, scalar(beta)], smooth)
            }
            if finite {
                let g = tmp("above")
                node("Greater", [bx, scalar(threshold)], g)
                node("Where", [g, x, smooth], y)
            }
        }
    }
}
