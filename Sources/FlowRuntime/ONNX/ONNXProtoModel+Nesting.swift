/// A bound on message nesting, checked before protobuf-c sees the bytes.
///
/// protobuf-c unpacks nested messages recursively with no depth limit, so a
/// few megabytes of `TypeProto.sequence_type` or `AttributeProto.g` nested
/// inside each other overflow the stack. This walker follows only the
/// message-typed fields of the ONNX schema that can recurse, iterates over
/// siblings, and stops at `maxDepth`; it reads nothing else and leaves every
/// other validation to protobuf-c.
extension ONNXProtoModel {
    static let maxNesting = 48

    private enum Kind {
        case model, graph, node, attribute, valueInfo, type, typeWrapper, trainingInfo, function, sparseTensor, tensor
    }

    /// Message-typed fields (field number → kind) that can lead to recursion.
    private static func children(_ kind: Kind) -> [UInt64: Kind] {
        switch kind {
        case .model: return [7: .graph, 20: .trainingInfo, 25: .function]
        case .graph: return [1: .node, 5: .tensor, 15: .sparseTensor, 11: .valueInfo, 12: .valueInfo, 13: .valueInfo]
        case .node: return [5: .attribute]
        case .attribute: return [5: .tensor, 6: .graph, 10: .tensor, 11: .graph, 14: .type, 15: .type, 22: .sparseTensor, 23: .sparseTensor]
        case .valueInfo: return [2: .type]
        // sequence_type, map_type, optional_type wrap another TypeProto.
        case .type: return [4: .typeWrapper, 5: .typeWrapper, 9: .typeWrapper]
        case .typeWrapper: return [1: .type, 2: .type]
        case .trainingInfo: return [1: .graph, 3: .graph]
        case .function: return [7: .node, 12: .valueInfo]
        case .sparseTensor: return [1: .tensor, 2: .tensor]
        case .tensor: return [:]
        }
    }

    /// - Throws: `.invalidModel` when messages nest deeper than `maxNesting`.
    static func checkNesting(_ bytes: UnsafeRawBufferPointer) throws {
        try walk(bytes, from: 0, to: bytes.count, kind: .model, depth: 0)
    }

    private static func walk(_ b: UnsafeRawBufferPointer, from start: Int, to end: Int, kind: Kind, depth: Int) throws {
        guard depth <= maxNesting else {
            throw FlowError.invalidModel("messages nest deeper than \(maxNesting) levels")
        }
        let fields = children(kind)
        if fields.isEmpty { return }
        var i = start
        func varint() -> UInt64? {
            var v: UInt64 = 0, shift: UInt64 = 0
            while i < end, shift < 64 {
                let byte = b[i]
                i += 1
                v |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while i < end {
            guard let tag = varint() else { return }
            switch tag & 7 {
            case 0: guard varint() != nil else { return }
            case 1: i += 8
            case 5: i += 4
            case 2:
                guard let n = varint(), n <= UInt64(end - i) else { return }
                let next = i + Int(n)
                if let child = fields[tag >> 3] {
                    try walk(b, from: i, to: next, kind: child, depth: depth + 1)
                }
                i = next
            default: return  // groups or garbage: protobuf-c rejects them
            }
        }
    }
}
