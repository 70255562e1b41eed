import CKernels

/// Transposed convolution (the gradient of a convolution with respect to
/// its input): inputs `[x, W]` or `[x, W, b]`, x `[Cin, spatial…]`,
/// W `[Cin, Cout/groups, kh, kw]` (ONNX / PyTorch layout), b `[Cout]`.
/// Output extent per axis: stride·(n − 1) + outputPadding + dilation·(k − 1)
/// + 1 − padsBegin − padsEnd.
///
/// It runs as the convolution it transposes, with input and output swapped
/// (`conv`): forward = b + convᵀ(x) (`fr_conv2d_backward_input`); JVP the
/// same without bias; VJP g_x += conv(g), g_W += Σ x ⋆ g, g_b += Σ g.
struct ConvTransposeOp: GraphOp {
    /// The forward convolution from this op's output space to its input space.
    var conv: ConvOp
    var outputPadding: [Int]

    var kindName: String { "ConvTranspose" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard (2...3).contains(inputs.count), inputs[0].isBatched, !inputs[1].isBatched else {
            throw FlowError.unsupported("node '\(node)': ConvTranspose needs a batched input and constant weights")
        }
        let x = inputs[0].shape, w = inputs[1].shape, r = conv.spatialRank
        guard x.count == r + 1, w.count == r + 2, w[0] == x[0], x[0] % conv.groups == 0 else {
            throw FlowError.shapeMismatch("node '\(node)': ConvTranspose of input \(x) with weight \(w) (groups \(conv.groups))")
        }
        let cout = w[1] * conv.groups
        if inputs.count == 3, inputs[2].shape.elementCount != cout {
            throw FlowError.shapeMismatch("node '\(node)': ConvTranspose bias \(inputs[2].shape) for \(cout) output channels")
        }
        // conv.padsEnd already holds padsEnd − outputPadding.
        let out = (0..<r).map { (d: Int) -> Int in
            let span: Int = conv.dilations[d] * (conv.kernel[d] - 1) + 1
            return conv.strides[d] * (x[d + 1] - 1) + span - conv.padsBegin[d] - conv.padsEnd[d]
        }
        guard out.allSatisfy({ $0 >= 1 }), (0..<r).allSatisfy({ conv.outputExtent(out[$0], axis: $0) == x[$0 + 1] }) else {
            throw FlowError.shapeMismatch("node '\(node)': ConvTranspose output \(out) for input \(x)")
        }
        return [cout] + out
    }

    func flops(_ inputs: [Graph.Value], output: Graph.Value) -> Int {
        2 * inputs[0].shape.elementCount * inputs[1].shape.dropFirst().reduce(1, *)
    }

    /// Geometry of `conv`: its input is this op's output.
    private func geometry(_ c: OpContext) -> fr_conv2d_geometry { conv.geometry(input: c.outputShape, output: c.shape(0)) }

    private func apply(_ c: OpContext, _ x: UnsafePointer<Float>, samples: Int, bias: UnsafePointer<Float>?) {
        var g = geometry(c)
        let scratch = c.scratch(fr_conv2d_scratch_floats(&g))
        let channels = c.outputShape[0], spatial = c.outputSize / channels
        for s in 0..<samples {
            for ch in 0..<channels {
                (c.out + (s * channels + ch) * spatial).update(repeating: bias?[ch] ?? 0, count: spatial)
            }
        }
        fr_conv2d_backward_input(&g, x, c.input(1), c.out, samples, scratch)
    }

    func forward(_ c: OpContext) { apply(c, c.input(0), samples: c.batch, bias: c.inputCount == 3 ? c.input(2) : nil) }
    func jvp(_ c: OpContext) { apply(c, c.tangent(0)!, samples: c.batch * c.k, bias: nil) }

    func vjp(_ c: OpContext) {
        var g = geometry(c)
        let scratch = c.scratch(fr_conv2d_scratch_floats(&g))
        if let gx = c.gradient(0) {
            let count = c.batch * c.size(0)
            let tmp = c.scratch2(count)
            fr_conv2d_forward(&g, c.out, c.input(1), nil, tmp, c.batch, scratch)
            for i in 0..<count { gx[i] += tmp[i] }
        }
        if let gw = c.gradient(1) { fr_conv2d_backward_weight(&g, c.out, c.input(0), gw, c.batch, scratch) }
        if c.inputCount == 3, let gb = c.gradient(2) {
            c.executor.sumChannels(c.out, into: gb, batch: c.batch, channels: c.outputShape[0],
                                   spatial: c.outputSize / c.outputShape[0])
        }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        e.node("ConvTranspose", n.inputs.map(e.name), e.name(n.output), [
            "kernel_shape": .ints(conv.kernel.map(Int64.init)), "strides": .ints(conv.strides.map(Int64.init)),
            "pads": .ints((conv.padsBegin + zip(conv.padsEnd, outputPadding).map { $0 + $1 }).map(Int64.init)),
            "dilations": .ints(conv.dilations.map(Int64.init)), "group": .int(Int64(conv.groups)),
            "output_padding": .ints(outputPadding.map(Int64.init)),
        ])
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["ConvTranspose": { i, n, _ in try i.conv(n, transposed: true) }]
    }
}

extension ONNXImporter {
    /// The ConvTranspose op for a node (attributes already parsed).
    func convTranspose(_ n: Node, attributes a: ConvAttributes, groups: Int, input: [Int], weight: [Int]) throws -> Operation {
        let rank = a.kernel.count
        let outputPadding = ints(n, "output_padding")?.map(Int.init) ?? [Int](repeating: 0, count: rank)
        guard outputPadding.count == rank, outputPadding.allSatisfy({ $0 >= 0 && $0 < 1 << 12 }) else {
            throw invalid(n, "output_padding \(outputPadding)")
        }
        var begin = a.padsBegin, end = a.padsEnd
        if let shape = ints(n, "output_shape")?.map(Int.init) {
            // Explicit output extents: pads follow (auto_pad rule of the spec).
            let spatial = Array(shape.suffix(rank))
            guard spatial.count == rank else { throw invalid(n, "output_shape \(shape)") }
            for d in 0..<rank {
                let total = a.strides[d] * (input[d + 1] - 1) + outputPadding[d] + a.dilations[d] * (a.kernel[d] - 1) + 1 - spatial[d]
                guard total >= 0 else { throw invalid(n, "output_shape \(shape) is too large") }
                (begin[d], end[d]) = a.autoPad == "SAME_UPPER" ? (total / 2, total - total / 2) : (total - total / 2, total / 2)
            }
        } else if a.autoPad == "SAME_UPPER" || a.autoPad == "SAME_LOWER" {
            for d in 0..<rank {
                let out = input[d + 1] * a.strides[d]
                let total = Swift.max(0, a.strides[d] * (input[d + 1] - 1) + outputPadding[d] + a.dilations[d] * (a.kernel[d] - 1) + 1 - out)
                (begin[d], end[d]) = a.autoPad == "SAME_UPPER" ? (total / 2, total - total / 2) : (total - total / 2, total / 2)
            }
        } else if a.autoPad == "VALID" {
            begin = [Int](repeating: 0, count: rank); end = begin
        }
        // Output extents the convolution cannot reach (output_padding) stay
        // as bias only; the kernels treat them as padding of the forward conv.
        for d in 0..<rank where outputPadding[d] >= a.strides[d] && outputPadding[d] >= a.dilations[d] {
            throw invalid(n, "output_padding \(outputPadding[d]) must be smaller than the stride or dilation")
        }
        let c = ConvOp(spatialRank: rank, kernel: a.kernel, strides: a.strides, padsBegin: begin,
                       padsEnd: zip(end, outputPadding).map { $0 - $1 }, dilations: a.dilations, groups: groups)
        return Operation(ConvTransposeOp(conv: c, outputPadding: outputPadding))
    }
}
