import CKernels

/// Convolution over the spatial axes of per-sample `[C, H, W]` (2-D) or
/// `[C, L]` (1-D, run as H = 1) values: inputs `[x, W]` or `[x, W, b]`,
/// W a parameter `[Cout, Cin/groups, kh, kw]` (or `[Cout, Cin/groups, k]`),
/// b `[Cout]`; strides, pads (top, left, bottom, right), dilations, groups.
///
/// Runs on the implicit-im2col kernels of CKernels (`fr_conv2d_*`): no
/// im2col buffer of the batch, scratch bounded by one tile.
/// JVP: conv(ẋ) without bias over batch·k samples. VJP: g_x += convᵀ(g),
/// g_W += Σ g ⋆ x, g_b += Σ g.
struct ConvOp: GraphOp {
    /// 1 or 2.
    var spatialRank: Int
    var kernel: [Int]
    var strides: [Int]
    /// Per spatial axis, the padding before (`padsBegin`) and after.
    var padsBegin: [Int], padsEnd: [Int]
    var dilations: [Int]
    var groups: Int

    var kindName: String { "Conv" }

    /// The spatial output extent for input extent `n` on axis `d`.
    func outputExtent(_ n: Int, axis d: Int) -> Int {
        (n + padsBegin[d] + padsEnd[d] - dilations[d] * (kernel[d] - 1) - 1) / strides[d] + 1
    }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard (2...3).contains(inputs.count), inputs[0].isBatched, !inputs[1].isBatched,
              !(inputs.count == 3 && inputs[2].isBatched) else {
            throw FlowError.unsupported("node '\(node)': Conv needs a batched input and constant weights")
        }
        let x = inputs[0].shape, w = inputs[1].shape
        guard x.count == spatialRank + 1, w.count == spatialRank + 2, kernel.count == spatialRank,
              Array(w.dropFirst(2)) == kernel, groups >= 1, x[0] % groups == 0, w[0] % groups == 0,
              w[1] * groups == x[0] else {
            throw FlowError.shapeMismatch("node '\(node)': Conv of input \(x) with weight \(w) (groups \(groups))")
        }
        if inputs.count == 3, inputs[2].shape.elementCount != w[0] {
            throw FlowError.shapeMismatch("node '\(node)': Conv bias \(inputs[2].shape) for \(w[0]) output channels")
        }
        let out = (0..<spatialRank).map { outputExtent(x[$0 + 1], axis: $0) }
        guard out.allSatisfy({ $0 >= 1 }) else {
            throw FlowError.shapeMismatch("node '\(node)': Conv output \(out) is empty for input \(x)")
        }
        return [w[0]] + out
    }

    /// The kernels' geometry for input shape `x`, output channels `cout`.
    func geometry(input x: [Int], output y: [Int]) -> fr_conv2d_geometry {
        let two = spatialRank == 2
        return fr_conv2d_geometry(
            cin: x[0], h: two ? x[1] : 1, w: two ? x[2] : x[1], cout: y[0],
            kh: two ? kernel[0] : 1, kw: kernel[spatialRank - 1],
            stride_h: two ? strides[0] : 1, stride_w: strides[spatialRank - 1],
            pad_top: two ? padsBegin[0] : 0, pad_left: padsBegin[spatialRank - 1],
            dil_h: two ? dilations[0] : 1, dil_w: dilations[spatialRank - 1], groups: groups,
            oh: two ? y[1] : 1, ow: y[spatialRank])
    }

    /// The geometry of weight shape `w` on a 1×1 image: what the weight
    /// packings depend on (channels, kernel, strides, pads, dilations,
    /// groups), not the image size.
    func weightGeometry(_ w: [Int]) -> fr_conv2d_geometry {
        geometry(input: [w[1] * groups] + Array(repeating: 1, count: spatialRank),
                 output: [w[0]] + Array(repeating: 1, count: spatialRank))
    }

    func flops(_ inputs: [Graph.Value], output: Graph.Value) -> Int {
        2 * output.shape.elementCount * inputs[1].shape.dropFirst().reduce(1, *)
    }

    /// Under `Precision.bf16`, convolutions with at least
    /// `Precision.bf16MinimumWidth` products per output (K = Cin/groups·kh·kw)
    /// and output channels per group run on `fr_conv2d_forward_bf16`; the
    /// first convolution of a net (K = 9 or 27: the image itself) and the
    /// output convolution (a few channels) stay float32, as narrow Linear
    /// layers do.
    func bf16Packing(_ inputs: [Graph.Value]) -> BF16Packing? {
        let w = inputs[1].shape
        guard w.count == spatialRank + 2, groups >= 1, w[0] % groups == 0 else { return nil }
        let k = w.dropFirst().reduce(1, *), coutPerGroup = w[0] / groups
        guard k >= Precision.bf16MinimumWidth, coutPerGroup >= Precision.bf16MinimumWidth else { return nil }
        var g = weightGeometry(w)
        return BF16Packing(input: 1, count: fr_conv2d_bf16_packed_count(&g)) { src, dst in
            var g = g
            fr_conv2d_pack_bf16(&g, src, dst)
        }
    }

    /// 3×3, stride-1 convolutions of at least 16 input and output channels
    /// (`fr_conv2d_winograd_applies`) run their forward pass, JVP and (pads
    /// ≤ 2) input gradient by Winograd's F(2×2, 3×3) on kernels transformed
    /// once per weight change: 2.25× fewer multiply-adds, float32
    /// throughout, each output within a small multiple of the direct form's
    /// rounding error. The weight gradient stays direct. The derived weights
    /// are the forward kernels, then the input gradient's.
    func derivedWeights(_ inputs: [Graph.Value]) -> DerivedWeights? {
        let w = inputs[1].shape
        guard w.count == spatialRank + 2 else { return nil }
        var g = weightGeometry(w)
        guard fr_conv2d_winograd_applies(&g) != 0 else { return nil }
        let one = fr_conv2d_winograd_packed_floats(&g), both = fr_conv2d_winograd_input_grad_applies(&g) != 0
        return DerivedWeights(input: 1, count: both ? 2 * one : one) { src, dst in
            var g = g
            fr_conv2d_winograd_pack(&g, src, dst)
            if both { fr_conv2d_winograd_pack_input_grad(&g, src, dst + one) }
        }
    }

    func forward(_ c: OpContext) {
        var g = geometry(input: c.shape(0), output: c.outputShape)
        let bias = c.inputCount == 3 ? UnsafePointer(c.input(2)) : nil
        if let wb = c.packedWeightsBF16 {
            fr_conv2d_forward_bf16(&g, c.input(0), wb, bias, c.out, c.batch, c.scratchBytes(fr_conv2d_bf16_scratch_bytes(&g)))
            return
        }
        let x = c.input(0), w = c.input(1), y = c.out, n = c.batch, u = c.derivedWeights
        let scratch = u == nil ? fr_conv2d_scratch_floats(&g) : fr_conv2d_winograd_scratch_floats(&g)
        // Splits come in whole 2 × 2 tiles (Winograd's output rows) or
        // blocks of 64 output positions (the direct form's).
        let unit = u == nil ? 64 : 2, extent = u == nil ? g.oh * g.ow : g.oh, units = (extent + unit - 1) / unit
        let threads = c.ws.splitThreads(flops: 2 * n * g.cout * g.oh * g.ow * (g.cin / g.groups) * g.kh * g.kw,
                                        parts: units)
        if threads > 1 {
            // A single sample's convolution over several cores, in `threads`
            // bands, each with its own scratch. Same values.
            c.ws.split(parts: threads, threads: threads, scratch: scratch) { [g] s, part in
                Self.band(g, x, w, u, bias, y, n, s, from: units * part / threads * unit,
                          to: units * (part + 1) / threads * unit)
            }
            return
        }
        Self.band(g, x, w, u, bias, y, n, c.scratch(scratch), from: 0, to: extent)
    }

    /// Outputs [from, to) of every sample: output rows under Winograd's
    /// kernels `u` (whole 2 × 2 tiles), else output positions.
    private static func band(_ g: fr_conv2d_geometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                             _ u: UnsafePointer<Float>?, _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
                             _ n: Int, _ scratch: UnsafeMutablePointer<Float>, from: Int, to: Int) {
        var g = g
        if let u {
            fr_conv2d_forward_winograd_rows(&g, x, u, bias, y, n, scratch, from, to)
        } else {
            fr_conv2d_forward_positions(&g, x, w, bias, y, n, scratch, from, to)
        }
    }

    func jvp(_ c: OpContext) {
        var g = geometry(input: c.shape(0), output: c.outputShape)
        if let wb = c.packedWeightsBF16 {
            fr_conv2d_forward_bf16(&g, c.tangent(0)!, wb, nil, c.out, c.batch * c.k,
                                   c.scratchBytes(fr_conv2d_bf16_scratch_bytes(&g)))
            return
        }
        if let u = c.derivedWeights {
            fr_conv2d_forward_winograd(&g, c.tangent(0)!, u, nil, c.out, c.batch * c.k,
                                       c.scratch(fr_conv2d_winograd_scratch_floats(&g)))
            return
        }
        let scratch = c.scratch(fr_conv2d_scratch_floats(&g))
        fr_conv2d_forward(&g, c.tangent(0)!, c.input(1), nil, c.out, c.batch * c.k, scratch)
    }

    func vjp(_ c: OpContext) {
        var g = geometry(input: c.shape(0), output: c.outputShape)
        let scratch = c.scratch(Swift.max(fr_conv2d_scratch_floats(&g), fr_conv2d_winograd_scratch_floats(&g)))
        if let gx = c.gradient(0) {
            if let u = c.derivedWeights, fr_conv2d_winograd_input_grad_applies(&g) != 0 {
                fr_conv2d_backward_input_winograd(&g, c.out, u + fr_conv2d_winograd_packed_floats(&g), gx, c.batch, scratch)
            } else {
                fr_conv2d_backward_input(&g, c.out, c.input(1), gx, c.batch, scratch)
            }
        }
        if let gw = c.gradient(1) { fr_conv2d_backward_weight(&g, c.input(0), c.out, gw, c.batch, scratch) }
        if c.inputCount == 3, let gb = c.gradient(2) {
            c.executor.sumChannels(c.out, into: gb, batch: c.batch, channels: c.outputShape[0],
                                   spatial: c.outputSize / c.outputShape[0])
        }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        e.node("Conv", n.inputs.map(e.name), e.name(n.output), [
            "kernel_shape": .ints(kernel.map(Int64.init)), "strides": .ints(strides.map(Int64.init)),
            "pads": .ints((padsBegin + padsEnd).map(Int64.init)), "dilations": .ints(dilations.map(Int64.init)),
            "group": .int(Int64(groups)),
        ])
    }

    static var onnxImports: [String: ONNXImportRule] { ["Conv": { i, n, _ in try i.conv(n, transposed: false) }] }
}

extension Operation {
    /// 2-D (or 1-D) convolution; see `ConvOp`.
    public static func conv(kernel: [Int], strides: [Int], padsBegin: [Int], padsEnd: [Int],
                            dilations: [Int], groups: Int) -> Operation {
        Operation(ConvOp(spatialRank: kernel.count, kernel: kernel, strides: strides, padsBegin: padsBegin,
                         padsEnd: padsEnd, dilations: dilations, groups: groups))
    }
}

extension Executor {
    /// gb[c] += Σ over batch and spatial positions of g[batch, c, spatial].
    func sumChannels(_ g: UnsafePointer<Float>, into gb: UnsafeMutablePointer<Float>, batch: Int, channels: Int, spatial: Int) {
        for s in 0..<batch {
            for ch in 0..<channels {
                gb[ch] += Lanes.sum(g + (s * channels + ch) * spatial, count: spatial)
            }
        }
    }
}

// MARK: ONNX import

extension ONNXImporter {
    /// The spatial attributes of Conv / ConvTranspose / pooling nodes for
    /// `rank` spatial axes: kernel from the attribute or `weightKernel`.
    struct ConvAttributes {
        var kernel: [Int], strides: [Int], dilations: [Int], padsBegin: [Int], padsEnd: [Int]
        var autoPad: String
    }

    func convAttributes(_ n: Node, rank: Int, weightKernel: [Int]?) throws -> ConvAttributes {
        let kernel = ints(n, "kernel_shape")?.map(Int.init) ?? weightKernel ?? []
        guard kernel.count == rank, kernel.allSatisfy({ $0 >= 1 && $0 <= 1 << 12 }) else {
            throw invalid(n, "kernel_shape \(kernel) for \(rank) spatial axes")
        }
        if let w = weightKernel, w != kernel { throw invalid(n, "kernel_shape \(kernel) differs from the weight's \(w)") }
        let strides = ints(n, "strides")?.map(Int.init) ?? [Int](repeating: 1, count: rank)
        let dilations = ints(n, "dilations")?.map(Int.init) ?? [Int](repeating: 1, count: rank)
        let pads = ints(n, "pads")?.map(Int.init) ?? [Int](repeating: 0, count: 2 * rank)
        guard strides.count == rank, dilations.count == rank, pads.count == 2 * rank,
              strides.allSatisfy({ $0 >= 1 && $0 <= 1 << 12 }), dilations.allSatisfy({ $0 >= 1 && $0 <= 1 << 12 }),
              pads.allSatisfy({ $0 >= 0 && $0 <= 1 << 12 }) else {
            throw invalid(n, "strides \(strides), dilations \(dilations) or pads \(pads) for \(rank) spatial axes")
        }
        let autoPad = n.attributes["auto_pad"]?.s ?? "NOTSET"
        return ConvAttributes(kernel: kernel, strides: strides, dilations: dilations,
                              padsBegin: Array(pads[..<rank]), padsEnd: Array(pads[rank...]), autoPad: autoPad)
    }

    /// Resolves auto_pad for a forward convolution over `spatial` extents.
    func resolveAutoPad(_ n: Node, _ a: inout ConvAttributes, spatial: [Int]) throws {
        switch a.autoPad {
        case "NOTSET", "": break
        case "VALID":
            a.padsBegin = [Int](repeating: 0, count: spatial.count); a.padsEnd = a.padsBegin
        case "SAME_UPPER", "SAME_LOWER":
            for d in 0..<spatial.count {
                let out = (spatial[d] + a.strides[d] - 1) / a.strides[d]
                let total = Swift.max(0, (out - 1) * a.strides[d] + a.dilations[d] * (a.kernel[d] - 1) + 1 - spatial[d])
                let small = total / 2, large = total - small
                (a.padsBegin[d], a.padsEnd[d]) = a.autoPad == "SAME_UPPER" ? (small, large) : (large, small)
            }
        default: throw unsupported(n, "auto_pad '\(a.autoPad)'")
        }
    }

    /// Conv and ConvTranspose: x batched `[C, spatial…]` (1 or 2 spatial
    /// axes), W and B constants.
    mutating func conv(_ n: Node, transposed: Bool) throws {
        guard case .batched(let x, true) = try input(n, 0) else { throw unsupported(n, "input X must be a batched value [batch, C, ...]") }
        guard case .float(let w, let trainable) = try input(n, 1) else { throw unsupported(n, "the weight must be a float constant") }
        let shape = builder.shape(of: x)
        let rank = shape.count - 1
        guard rank == 1 || rank == 2 else { throw unsupported(n, "\(rank)-D convolution (only 1-D and 2-D)") }
        guard w.rank == rank + 2 else { throw invalid(n, "weight \(w.shape) for a \(rank)-D convolution") }
        var a = try convAttributes(n, rank: rank, weightKernel: Array(w.shape.dropFirst(2)))
        let groups = Int(try int(n, "group", 1))
        guard groups >= 1, groups <= shape[0] else { throw invalid(n, "group \(groups)") }
        var inputs = [x, param(w, trainable: trainable, n.inputs[1])]
        if let b = try optionalInput(n, 2) {
            guard case .float(let bt, let btr) = b else { throw unsupported(n, "the bias must be a float constant") }
            inputs.append(param(bt.reshaped([bt.count]), trainable: btr, n.inputs[2]))
        }
        let op: Operation
        if transposed {
            op = try convTranspose(n, attributes: a, groups: groups, input: shape, weight: w.shape)
        } else {
            try resolveAutoPad(n, &a, spatial: Array(shape.dropFirst()))
            op = .conv(kernel: a.kernel, strides: a.strides, padsBegin: a.padsBegin, padsEnd: a.padsEnd,
                       dilations: a.dilations, groups: groups)
        }
        try set(n, .batched(try builder.apply(op, inputs, name: currentNode), batchAxis: true))
    }
}
