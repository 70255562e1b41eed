/// Builds a `Graph` node by node with shape inference.
///
/// Operations whose inputs are all parameters are folded into a new constant
/// parameter at build time, so the executed graph only touches batched data.
///
///     var b = GraphBuilder(dimension: 2)
///     let h = try b.linear(b.concat([b.x, b.t]), weight: w, bias: bias, activation: .silu)
///     let graph = try b.finish(output: h)
public struct GraphBuilder {
    public private(set) var graph: Graph

    /// - Parameters:
    ///   - dimension: d, the per-sample shape of `x` is `[d]`.
    ///   - timeShape: per-sample shape of `t`: `[1]` (default) or `[]`.
    public init(dimension: Int, timeShape: [Int] = [1], xName: String = "x", tName: String = "t") {
        self.init(sampleShape: [dimension], timeShape: timeShape, xName: xName, tName: tName)
    }

    /// - Parameters:
    ///   - sampleShape: the per-sample shape of `x` (`[d]`, `[C, H, W]`, …).
    ///   - timeShape: per-sample shape of `t`: `[1]` (default) or `[]`.
    public init(sampleShape: [Int], timeShape: [Int] = [1], xName: String = "x", tName: String = "t") {
        precondition(sampleShape.allSatisfy { $0 > 0 } && (timeShape == [1] || timeShape == []))
        graph = Graph(
            values: [
                .init(name: xName, shape: sampleShape, isBatched: true, source: .inputX),
                .init(name: tName, shape: timeShape, isBatched: true, source: .inputT),
            ],
            nodes: [], parameters: [], x: 0, t: 1, output: 0)
    }

    public var x: ValueID { graph.x }
    public var t: ValueID { graph.t }
    public var context: ValueID? { graph.context }

    /// Adds the context input: per-sample `shape` floats (`[m]` for a
    /// vector, `[]` for a class label carried as a float).
    /// - Precondition: no context yet.
    @discardableResult
    public mutating func addContext(shape: [Int], name: String = "c") -> ValueID {
        precondition(graph.context == nil, "the graph already has a context input")
        let id = graph.values.count
        graph.values.append(.init(name: uniqueName(name), shape: shape, isBatched: true, source: .inputContext))
        graph.context = id
        return id
    }

    /// The per-sample (batched) or full (parameter) shape of a value.
    public func shape(of v: ValueID) -> [Int] { graph.values[v].shape }
    public func isBatched(_ v: ValueID) -> Bool { graph.values[v].isBatched }
    /// The tensor of a parameter value, nil for batched values.
    public func constant(_ v: ValueID) -> Tensor? {
        if case .parameter(let p) = graph.values[v].source { return graph.parameters[p].tensor }
        return nil
    }

    private func uniqueName(_ base: String) -> String {
        let taken = Set(graph.values.map(\.name))
        if !taken.contains(base) { return base }
        var i = 1
        while taken.contains("\(base)_\(i)") { i += 1 }
        return "\(base)_\(i)"
    }

    /// Adds a parameter (trainable weight or constant) and returns its value.
    public mutating func parameter(_ name: String, _ tensor: Tensor, trainable: Bool = true) -> ValueID {
        graph.parameters.append(.init(name: uniqueName(name), tensor: tensor, isTrainable: trainable))
        let id = graph.values.count
        graph.values.append(.init(name: graph.parameters.last!.name, shape: tensor.shape,
                                  isBatched: false, source: .parameter(graph.parameters.count - 1)))
        return id
    }

    /// Applies an operation after checking its inputs' shapes.
    /// - Throws: `FlowError.shapeMismatch` or `.unsupported` naming the node.
    @discardableResult
    public mutating func apply(_ op: Operation, _ inputs: [ValueID], name: String? = nil) throws -> ValueID {
        let nodeName = name ?? "\(op.kindName)_\(graph.nodes.count)"
        for i in inputs where i < 0 || i >= graph.values.count {
            throw FlowError.invalidModel("node '\(nodeName)': unknown input value \(i)")
        }
        let infos = inputs.map { graph.values[$0] }
        // Fold when no input is batched.
        if !infos.contains(where: \.isBatched) {
            let tensors = inputs.map { constant($0)! }
            let folded = try op.op.fold(tensors, node: nodeName)
            return parameter(nodeName, folded, trainable: false)
        }
        let shape = try op.op.outputShape(infos, node: nodeName)
        let id = graph.values.count
        graph.values.append(.init(name: uniqueName(nodeName), shape: shape, isBatched: true,
                                  source: .node(graph.nodes.count)))
        graph.nodes.append(.init(operation: op, inputs: inputs, output: id, name: nodeName))
        return id
    }

    /// Marks a parameter as trainable or constant.
    public mutating func setTrainable(_ v: ValueID, _ trainable: Bool) {
        if case .parameter(let p) = graph.values[v].source { graph.parameters[p].isTrainable = trainable }
    }

    /// Finishes the graph; removes nodes and parameters the output does not use.
    /// - Throws: `.shapeMismatch` unless the output is batched with x's
    ///   element count (another shape of that count, e.g. `[1, d]`, is
    ///   reshaped to x's).
    public func finish(output: ValueID) throws -> Graph {
        var b = self
        var out = output
        let shape = graph.sampleShape
        let info = graph.values[output]
        guard info.isBatched else {
            throw FlowError.shapeMismatch("the output '\(info.name)' does not depend on the batch")
        }
        if info.shape != shape {
            guard info.shape.elementCount == shape.elementCount else {
                throw FlowError.shapeMismatch(
                    "the output '\(info.name)' has per-sample shape \(info.shape); expected \(shape) to match x")
            }
            out = try b.apply(.reshape(shape: shape), [output], name: "output_reshape")
        }
        var g = b.graph
        g = Graph(values: g.values, nodes: g.nodes, parameters: g.parameters, x: g.x, t: g.t, output: out,
                  context: g.context)
        return g.pruned()
    }
}

extension Graph {
    /// A copy without the nodes and parameters `output` does not need
    /// (inputs x and t stay), with value and parameter ids renumbered.
    func pruned() -> Graph {
        var live = [Bool](repeating: false, count: values.count)
        live[output] = true
        live[x] = true
        live[t] = true
        if let context { live[context] = true }
        for node in nodes.reversed() where live[node.output] {
            for i in node.inputs { live[i] = true }
        }
        var newValueID = [Int](repeating: -1, count: values.count)
        var newValues: [Value] = []
        var newParams: [Parameter] = []
        var newNodes: [Node] = []
        // Inputs first, then parameters, then nodes in order.
        for (i, v) in values.enumerated() where live[i] {
            switch v.source {
            case .inputX, .inputT, .inputContext:
                newValueID[i] = newValues.count
                newValues.append(v)
            default: break
            }
        }
        for (i, v) in values.enumerated() where live[i] {
            if case .parameter(let p) = v.source {
                newValueID[i] = newValues.count
                var nv = v
                nv.source = .parameter(newParams.count)
                newParams.append(parameters[p])
                newValues.append(nv)
            }
        }
        for node in nodes where live[node.output] {
            let id = newValues.count
            var nv = values[node.output]
            nv.source = .node(newNodes.count)
            newValueID[node.output] = id
            newValues.append(nv)
            newNodes.append(.init(operation: node.operation, inputs: node.inputs.map { newValueID[$0] },
                                  output: id, name: node.name))
        }
        return Graph(values: newValues, nodes: newNodes, parameters: newParams,
                     x: newValueID[x], t: newValueID[t], output: newValueID[output],
                     context: context.map { newValueID[$0] })
    }
}
