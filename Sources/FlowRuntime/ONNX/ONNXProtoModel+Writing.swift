import ONNXProto
#if canImport(Glibc)
import Glibc
#endif

/// Serialization of the Swift mirror with protobuf-c: the mirror is copied
/// into C messages allocated in an arena (freed together after packing).
extension ONNXProtoModel {
    /// The serialized `ModelProto`.
    func serialized() -> [UInt8] {
        let arena = _CArena()
        let m = arena.message(Onnx__ModelProto.self, onnx__model_proto__init)
        m.pointee.has_ir_version = 1
        m.pointee.ir_version = irVersion
        m.pointee.producer_name = arena.string(producer)
        let opsetPointers = opsets.sorted { $0.key < $1.key }.map { domain, version -> UnsafeMutablePointer<Onnx__OperatorSetIdProto>? in
            let o = arena.message(Onnx__OperatorSetIdProto.self, onnx__operator_set_id_proto__init)
            o.pointee.domain = arena.string(domain)
            o.pointee.has_version = 1
            o.pointee.version = version
            return o
        }
        (m.pointee.n_opset_import, m.pointee.opset_import) = arena.array(opsetPointers)
        let props = metadata.map { entry -> UnsafeMutablePointer<Onnx__StringStringEntryProto>? in
            let e = arena.message(Onnx__StringStringEntryProto.self, onnx__string_string_entry_proto__init)
            e.pointee.key = arena.string(entry.key)
            e.pointee.value = arena.string(entry.value)
            return e
        }
        (m.pointee.n_metadata_props, m.pointee.metadata_props) = arena.array(props)
        m.pointee.graph = Self.write(graph, arena)
        let size = onnx__model_proto__get_packed_size(m)
        var bytes = [UInt8](repeating: 0, count: size)
        let written = bytes.withUnsafeMutableBufferPointer { onnx__model_proto__pack(m, $0.baseAddress) }
        precondition(written == size, "protobuf-c packed \(written) of \(size) bytes")
        return bytes
    }

    private static func write(_ g: Graph, _ arena: _CArena) -> UnsafeMutablePointer<Onnx__GraphProto> {
        let p = arena.message(Onnx__GraphProto.self, onnx__graph_proto__init)
        p.pointee.name = arena.string("flowrt_velocity")
        (p.pointee.n_node, p.pointee.node) = arena.array(g.nodes.map { Optional(write($0, arena)) })
        (p.pointee.n_initializer, p.pointee.initializer) = arena.array(g.initializers.map { Optional(write($0, arena)) })
        (p.pointee.n_input, p.pointee.input) = arena.array(g.inputs.map { Optional(write($0, arena)) })
        (p.pointee.n_output, p.pointee.output) = arena.array(g.outputs.map { Optional(write($0, arena)) })
        return p
    }

    private static func write(_ n: Node, _ arena: _CArena) -> UnsafeMutablePointer<Onnx__NodeProto> {
        let p = arena.message(Onnx__NodeProto.self, onnx__node_proto__init)
        p.pointee.name = arena.string(n.name)
        p.pointee.op_type = arena.string(n.opType)
        if !n.domain.isEmpty { p.pointee.domain = arena.string(n.domain) }
        (p.pointee.n_input, p.pointee.input) = arena.array(n.inputs.map { Optional(arena.string($0)) })
        (p.pointee.n_output, p.pointee.output) = arena.array(n.outputs.map { Optional(arena.string($0)) })
        let attributes = n.attributes.sorted { $0.key < $1.key }.map { name, a -> UnsafeMutablePointer<Onnx__AttributeProto>? in
            let q = arena.message(Onnx__AttributeProto.self, onnx__attribute_proto__init)
            q.pointee.name = arena.string(name)
            q.pointee.has_type = 1
            q.pointee.type = Onnx__AttributeProto__AttributeType(rawValue: UInt32(a.type))
            if let f = a.f { q.pointee.has_f = 1; q.pointee.f = f }
            if let i = a.i { q.pointee.has_i = 1; q.pointee.i = i }
            if let s = a.s { q.pointee.has_s = 1; q.pointee.s = arena.binary(Array(s.utf8)) }
            if let t = a.t { q.pointee.t = write(t, arena) }
            (q.pointee.n_floats, q.pointee.floats) = arena.array(a.floats)
            (q.pointee.n_ints, q.pointee.ints) = arena.array(a.ints)
            return q
        }
        (p.pointee.n_attribute, p.pointee.attribute) = arena.array(attributes)
        return p
    }

    private static func write(_ t: Tensor, _ arena: _CArena) -> UnsafeMutablePointer<Onnx__TensorProto> {
        let p = arena.message(Onnx__TensorProto.self, onnx__tensor_proto__init)
        p.pointee.name = arena.string(t.name)
        p.pointee.has_data_type = 1
        p.pointee.data_type = t.dataType
        (p.pointee.n_dims, p.pointee.dims) = arena.array(t.dims)
        if let raw = t.raw {
            p.pointee.has_raw_data = 1
            p.pointee.raw_data = arena.binary(raw)
        }
        (p.pointee.n_float_data, p.pointee.float_data) = arena.array(t.floats)
        (p.pointee.n_int32_data, p.pointee.int32_data) = arena.array(t.int32s)
        (p.pointee.n_int64_data, p.pointee.int64_data) = arena.array(t.int64s)
        (p.pointee.n_double_data, p.pointee.double_data) = arena.array(t.doubles)
        if t.isExternal {
            p.pointee.has_data_location = 1
            p.pointee.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL
            let entries = t.external.sorted { $0.key < $1.key }.map { k, v -> UnsafeMutablePointer<Onnx__StringStringEntryProto>? in
                let e = arena.message(Onnx__StringStringEntryProto.self, onnx__string_string_entry_proto__init)
                e.pointee.key = arena.string(k)
                e.pointee.value = arena.string(v)
                return e
            }
            (p.pointee.n_external_data, p.pointee.external_data) = arena.array(entries)
        }
        return p
    }

    private static func write(_ v: ValueInfo, _ arena: _CArena) -> UnsafeMutablePointer<Onnx__ValueInfoProto> {
        let p = arena.message(Onnx__ValueInfoProto.self, onnx__value_info_proto__init)
        p.pointee.name = arena.string(v.name)
        let type = arena.message(Onnx__TypeProto.self, onnx__type_proto__init)
        let tensor = arena.message(Onnx__TypeProto__Tensor.self, onnx__type_proto__tensor__init)
        tensor.pointee.has_elem_type = 1
        tensor.pointee.elem_type = v.elementType ?? 1
        if let dims = v.dims {
            let shape = arena.message(Onnx__TensorShapeProto.self, onnx__tensor_shape_proto__init)
            let ds = dims.map { d -> UnsafeMutablePointer<Onnx__TensorShapeProto__Dimension>? in
                let q = arena.message(Onnx__TensorShapeProto__Dimension.self, onnx__tensor_shape_proto__dimension__init)
                if let d {
                    q.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                    q.pointee.dim_value = d
                } else {
                    q.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                    q.pointee.dim_param = arena.string("batch")
                }
                return q
            }
            (shape.pointee.n_dim, shape.pointee.dim) = arena.array(ds)
            tensor.pointee.shape = shape
        }
        type.pointee.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE
        type.pointee.tensor_type = tensor
        p.pointee.type = type
        return p
    }
}

/// Owns C allocations for one serialization; frees them all on deinit.
final class _CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for b in blocks { free(b) } }

    private func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        guard let raw = calloc(Swift.max(count, 1), MemoryLayout<T>.stride) else { fatalError("out of memory") }
        blocks.append(raw)
        return raw.bindMemory(to: T.self, capacity: Swift.max(count, 1))
    }

    /// A message initialised by its protobuf-c `_init` function.
    func message<T>(_ type: T.Type, _ initialise: (UnsafeMutablePointer<T>?) -> Void) -> UnsafeMutablePointer<T> {
        let p = allocate(type, count: 1)
        initialise(p)
        return p
    }

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let bytes = Array(s.utf8CString)
        let p = allocate(CChar.self, count: bytes.count)
        p.update(from: bytes, count: bytes.count)
        return p
    }

    func binary(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        let p = allocate(UInt8.self, count: bytes.count)
        p.update(from: bytes, count: bytes.count)
        return ProtobufCBinaryData(len: bytes.count, data: p)
    }

    func array<T>(_ items: [T]) -> (Int, UnsafeMutablePointer<T>?) {
        if items.isEmpty { return (0, nil) }
        let p = allocate(T.self, count: items.count)
        p.initialize(from: items, count: items.count)
        return (items.count, p)
    }
}
