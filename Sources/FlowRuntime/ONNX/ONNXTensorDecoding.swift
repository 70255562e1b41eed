/// Decoding of ONNX `TensorProto` payloads (raw little-endian bytes, typed
/// repeated fields, or external data files) into float or integer constants.
///
/// Every size is checked against the bytes actually present before anything
/// is allocated: a dimension claiming 10¹² elements is an error, never an
/// allocation.
enum ONNXTensorDecoding {
    enum ElementType: Int32 {
        case float = 1, uint8 = 2, int8 = 3, int32 = 6, int64 = 7, bool = 9, double = 11

        var size: Int {
            switch self {
            case .float, .int32: return 4
            case .uint8, .int8, .bool: return 1
            case .int64, .double: return 8
            }
        }
        var isFloating: Bool { self == .float || self == .double }
    }

    /// A decoded tensor: float data or integers (bool as 0/1).
    enum Decoded {
        case float(Tensor)
        case ints(IntConstant)
    }

    static func typeName(_ t: Int32) -> String {
        let names: [Int32: String] = [0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16",
                                      6: "INT32", 7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE",
                                      12: "UINT32", 13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16"]
        return names[t] ?? "type \(t)"
    }

    /// Decodes `t`; external data is read relative to `directory`.
    /// - Throws: `.invalidModel` for negative or overflowing dimensions and
    ///   payloads whose size does not match the shape; `.unsupported` for
    ///   element types other than float, double, int32, int64, int8, uint8,
    ///   bool; `.io` when an external file is missing or too short.
    static func decode(_ t: ONNXProtoModel.Tensor, directory: String?) throws -> Decoded {
        let name = t.name.isEmpty ? "<unnamed>" : t.name
        guard let type = ElementType(rawValue: t.dataType) else {
            throw FlowError.unsupported("tensor '\(name)': element type \(typeName(t.dataType)) is not supported")
        }
        var shape: [Int] = []
        for d in t.dims {
            guard d >= 0, d < (1 << 40) else { throw FlowError.invalidModel("tensor '\(name)': invalid dimension \(d)") }
            shape.append(Int(d))
        }
        guard let count = shape.checkedElementCount, count < (1 << 40) else {
            throw FlowError.invalidModel("tensor '\(name)': shape \(shape) overflows")
        }
        var raw = t.raw
        if t.isExternal {
            raw = try externalBytes(t, name: name, count: count, elementSize: type.size, directory: directory)
        }
        if let raw {
            let (need, o) = count.multipliedReportingOverflow(by: type.size)
            guard !o, raw.count == need else {
                throw FlowError.invalidModel(
                    "tensor '\(name)': shape \(shape) of \(typeName(t.dataType)) needs \(o ? "too many" : "\(need)") bytes, the data has \(raw.count)")
            }
            return fromRaw(raw, type: type, shape: shape)
        }
        func check(_ n: Int, _ field: String) throws {
            guard n == count else {
                throw FlowError.invalidModel("tensor '\(name)': shape \(shape) needs \(count) values, \(field) has \(n)")
            }
        }
        switch type {
        case .float:
            try check(t.floats.count, "float_data")
            return .float(Tensor(shape: shape, scalars: t.floats))
        case .double:
            try check(t.doubles.count, "double_data")
            return .float(Tensor(shape: shape, scalars: t.doubles.map { Float($0) }))
        case .int64:
            try check(t.int64s.count, "int64_data")
            return .ints(IntConstant(shape: shape, values: t.int64s.map { .known($0) }))
        case .int32, .int8, .uint8, .bool:
            try check(t.int32s.count, "int32_data")
            return .ints(IntConstant(shape: shape, values: t.int32s.map { .known(Int64($0)) }))
        }
    }

    private static func fromRaw(_ raw: [UInt8], type: ElementType, shape: [Int]) -> Decoded {
        raw.withUnsafeBytes { b in
            let n = raw.count / type.size
            switch type {
            case .float:
                return .float(Tensor(shape: shape, scalars: (0..<n).map {
                    Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)))
                }))
            case .double:
                return .float(Tensor(shape: shape, scalars: (0..<n).map {
                    Float(Double(bitPattern: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self))))
                }))
            case .int64:
                return .ints(IntConstant(shape: shape, values: (0..<n).map {
                    .known(Int64(littleEndian: b.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)))
                }))
            case .int32:
                return .ints(IntConstant(shape: shape, values: (0..<n).map {
                    .known(Int64(Int32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))))
                }))
            case .int8:
                return .ints(IntConstant(shape: shape, values: (0..<n).map { .known(Int64(Int8(bitPattern: b[$0]))) }))
            case .uint8, .bool:
                return .ints(IntConstant(shape: shape, values: (0..<n).map { .known(Int64(b[$0])) }))
            }
        }
    }

    private static func externalBytes(_ t: ONNXProtoModel.Tensor, name: String, count: Int, elementSize: Int,
                                      directory: String?) throws -> [UInt8] {
        guard let location = t.external["location"] else {
            throw FlowError.invalidModel("tensor '\(name)': external data without a location")
        }
        guard let directory else {
            throw FlowError.invalidArgument(
                "tensor '\(name)': the model keeps its weights in '\(location)'; load it from a path (or give the folder) to read external data")
        }
        let path = try ONNXExternalData.path(location, in: directory, tensor: name)
        func integer(_ key: String) throws -> Int? {
            guard let s = t.external[key] else { return nil }
            guard let v = Int(s), v >= 0 else {
                throw FlowError.invalidModel("tensor '\(name)': external data \(key) '\(s)' is not a non-negative integer")
            }
            return v
        }
        let offset = try integer("offset") ?? 0
        let (need, o) = count.multipliedReportingOverflow(by: elementSize)
        guard !o else { throw FlowError.invalidModel("tensor '\(name)': too many elements") }
        let length = try integer("length") ?? need
        guard length == need else {
            throw FlowError.invalidModel("tensor '\(name)': external length \(length) does not match \(need) bytes for its shape")
        }
        do {
            return try FileIO.read(path, offset: offset, count: length)
        } catch let e as FlowError {
            throw FlowError.io("tensor '\(name)': external data: \(e.message)")
        }
    }
}
