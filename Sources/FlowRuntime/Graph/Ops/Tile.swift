/// Tile: repeats the per-sample axes `repeats[d]` times. Runs as an index map.
struct TileOp: IndexMappingOp {
    var repeats: [Int]
    let map: IndexMap

    init(repeats: [Int], inputShape: [Int], node: String) throws {
        guard repeats.count == inputShape.count, repeats.allSatisfy({ $0 >= 1 }) else {
            throw FlowError.unsupported("node '\(node)': repeats \(repeats) for \(inputShape)")
        }
        self.repeats = repeats
        let outShape = zip(inputShape, repeats).map { $0 * $1 }
        map = try IndexMap.build(outShape: outShape, inShape: inputShape, node: node) { o in
            (0..<o.count).map { o[$0] % inputShape[$0] }
        }
    }

    var kindName: String { "Tile" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1, inputs[0].shape.count == repeats.count else {
            throw FlowError.shapeMismatch("node '\(node)': Tile of rank \(repeats.count) for \(inputs.map(\.shape))")
        }
        return zip(inputs[0].shape, repeats).map { $0 * $1 }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let out = e.name(n.output)
        let r = e.int64Initializer(out + "/repeats", ([1] + repeats).map(Int64.init))
        e.node("Tile", [e.name(n.inputs[0]), r], out)
    }

    static var onnxImports: [String: ONNXImportRule] { ["Tile": { i, n, _ in try i.tile(n) }] }
}

extension ONNXImporter {
    mutating func tile(_ n: Node) throws {
        let v = try input(n, 0)
        let repeats = try knownInts(n, 1, "repeats").map(Int.init)
        switch v {
        case .batched(let id, let batchAxis):
            let shape = builder.shape(of: id)
            guard repeats.count == shape.count + (batchAxis ? 1 : 0) else { throw invalid(n, "repeats \(repeats) for rank") }
            var r = repeats
            if batchAxis {
                guard r[0] == 1 else { throw unsupported(n, "tiling the batch axis") }
                r.removeFirst()
            }
            let op = try TileOp(repeats: r, inputShape: shape, node: currentNode)
            try set(n, .batched(try builder.apply(Operation(op), [id], name: currentNode), batchAxis: batchAxis))
        default:
            let shape = constantShape(v)!
            let op = try TileOp(repeats: repeats, inputShape: shape, node: currentNode)
            _ = try checkedCount(zip(shape, repeats).map { $0 * $1 }, "node '\(currentNode)'")
            try set(n, pick(v, op.map.sources.map { Int($0) }, shape: zip(shape, repeats).map { $0 * $1 }))
        }
    }
}
