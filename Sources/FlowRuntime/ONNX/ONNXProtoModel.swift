import ONNXProto

/// Swift mirrors of the ONNX protobuf messages the importer reads.
///
/// `ONNXProtoModel.parse` unpacks bytes with the protobuf-c code in the
/// `ONNXProto` target, copies what the importer needs into these value
/// types and frees the C message at once, so no C pointer outlives parsing.
/// Unknown fields (newer IR versions) are skipped by protobuf-c.
struct ONNXProtoModel {
    var irVersion: Int64
    var producer: String
    /// Operator set per domain ("" and "ai.onnx" are both the default domain).
    var opsets: [String: Int64]
    var graph: Graph
    var metadata: [(key: String, value: String)]

    struct Graph {
        var nodes: [Node]
        var initializers: [Tensor]
        var inputs: [ValueInfo]
        var outputs: [ValueInfo]
    }

    struct Node {
        var opType: String
        var domain: String
        var name: String
        var inputs: [String]
        var outputs: [String]
        var attributes: [String: Attribute]
    }

    struct Attribute {
        var type: Int32
        var f: Float?
        var i: Int64?
        var s: String?
        var t: Tensor?
        var floats: [Float]
        var ints: [Int64]
    }

    /// A tensor with its payload still encoded (decoded by `ONNXTensorDecoder`).
    struct Tensor {
        var name: String
        var dims: [Int64]
        var dataType: Int32
        var raw: [UInt8]?
        var floats: [Float]
        var int32s: [Int32]
        var int64s: [Int64]
        var doubles: [Double]
        var isExternal: Bool
        var external: [String: String]
    }

    /// A graph input or output: float element type and per-axis extents
    /// (nil for a symbolic or unknown extent; `dims` nil when no shape is given).
    struct ValueInfo {
        var name: String
        var elementType: Int32?
        var dims: [Int64?]?
    }

    /// Unpacks a serialized `ModelProto`.
    /// - Throws: `.invalidModel` when the bytes are not a valid protobuf
    ///   message or the model has no graph.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> ONNXProtoModel {
        guard bytes.count > 0, let base = bytes.baseAddress else {
            throw FlowError.invalidModel("the ONNX data is empty")
        }
        try checkNesting(bytes)
        guard let message = onnx__model_proto__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self)) else {
            throw FlowError.invalidModel("the data (\(bytes.count) bytes) is not a valid ONNX protobuf (truncated or corrupt)")
        }
        defer { onnx__model_proto__free_unpacked(message, nil) }
        let m = message.pointee
        guard let g = m.graph else { throw FlowError.invalidModel("the ONNX model has no graph") }
        var opsets: [String: Int64] = [:]
        for op in array(m.opset_import, m.n_opset_import) {
            let domain = string(op.pointee.domain)
            opsets[domain == "ai.onnx" ? "" : domain] = op.pointee.has_version != 0 ? op.pointee.version : 1
        }
        let metadata = array(m.metadata_props, m.n_metadata_props).map {
            (key: string($0.pointee.key), value: string($0.pointee.value))
        }
        return ONNXProtoModel(
            irVersion: m.has_ir_version != 0 ? m.ir_version : 0,
            producer: string(m.producer_name),
            opsets: opsets,
            graph: try graph(g.pointee),
            metadata: metadata)
    }

    private static func graph(_ g: Onnx__GraphProto) throws -> Graph {
        if g.n_sparse_initializer > 0 {
            throw FlowError.unsupported("sparse initializers are not supported")
        }
        return Graph(
            nodes: try array(g.node, g.n_node).map { try node($0.pointee) },
            initializers: try array(g.initializer, g.n_initializer).map { try tensor($0.pointee) },
            inputs: array(g.input, g.n_input).map { valueInfo($0.pointee) },
            outputs: array(g.output, g.n_output).map { valueInfo($0.pointee) })
    }

    private static func node(_ n: Onnx__NodeProto) throws -> Node {
        var attributes: [String: Attribute] = [:]
        for a in array(n.attribute, n.n_attribute) {
            let p = a.pointee
            attributes[string(p.name)] = Attribute(
                type: Int32(p.type.rawValue),
                f: p.has_f != 0 ? p.f : nil,
                i: p.has_i != 0 ? p.i : nil,
                s: p.has_s != 0 ? binaryString(p.s) : nil,
                t: try p.t.map { try tensor($0.pointee) },
                floats: scalars(p.floats, p.n_floats),
                ints: scalars(p.ints, p.n_ints))
        }
        return Node(
            opType: string(n.op_type), domain: string(n.domain), name: string(n.name),
            inputs: strings(n.input, n.n_input), outputs: strings(n.output, n.n_output),
            attributes: attributes)
    }

    private static func tensor(_ t: Onnx__TensorProto) throws -> Tensor {
        var external: [String: String] = [:]
        for e in array(t.external_data, t.n_external_data) {
            external[string(e.pointee.key)] = string(e.pointee.value)
        }
        if t.segment != nil { throw FlowError.unsupported("tensor '\(string(t.name))': segmented tensors are not supported") }
        return Tensor(
            name: string(t.name),
            dims: scalars(t.dims, t.n_dims),
            dataType: t.has_data_type != 0 ? t.data_type : 0,
            raw: t.has_raw_data != 0 ? bytes(t.raw_data) : nil,
            floats: scalars(t.float_data, t.n_float_data),
            int32s: scalars(t.int32_data, t.n_int32_data),
            int64s: scalars(t.int64_data, t.n_int64_data),
            doubles: scalars(t.double_data, t.n_double_data),
            isExternal: t.has_data_location != 0 && t.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL,
            external: external)
    }

    private static func valueInfo(_ v: Onnx__ValueInfoProto) -> ValueInfo {
        var info = ValueInfo(name: string(v.name), elementType: nil, dims: nil)
        guard let type = v.type, type.pointee.value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE,
              let tensorType = type.pointee.tensor_type else { return info }
        if tensorType.pointee.has_elem_type != 0 { info.elementType = tensorType.pointee.elem_type }
        if let shape = tensorType.pointee.shape {
            info.dims = array(shape.pointee.dim, shape.pointee.n_dim).map { d in
                d.pointee.value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? d.pointee.dim_value : nil
            }
        }
        return info
    }

    // MARK: C helpers (pointers stay inside this file)

    private static func string(_ p: UnsafeMutablePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(cString: p)
    }

    private static func strings(_ p: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ n: Int) -> [String] {
        guard let p, n > 0 else { return [] }
        return (0..<n).map { string(p[$0]) }
    }

    private static func array<T>(_ p: UnsafeMutablePointer<UnsafeMutablePointer<T>?>?, _ n: Int) -> [UnsafeMutablePointer<T>] {
        guard let p, n > 0 else { return [] }
        return (0..<n).compactMap { p[$0] }
    }

    private static func scalars<T>(_ p: UnsafeMutablePointer<T>?, _ n: Int) -> [T] {
        guard let p, n > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: n))
    }

    private static func bytes(_ b: ProtobufCBinaryData) -> [UInt8] {
        guard let p = b.data, b.len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: b.len))
    }

    private static func binaryString(_ b: ProtobufCBinaryData) -> String {
        String(decoding: bytes(b), as: UTF8.self)
    }
}
