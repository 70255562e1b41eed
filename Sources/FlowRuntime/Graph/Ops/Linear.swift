import CKernels

/// Linear: y = f(x · Wᵀ + b) over the last axis (W `[out, in]`), or
/// y = f(x · W + b) (W `[in, out]`, MatMul layout).
///
/// Inputs `[x, W]` or `[x, W, b]`: x batched `[..., in]`, W a parameter
/// (`weightTransposed`: PyTorch's `[out, in]`; else `[in, out]`), b a
/// parameter `[out]`. Gemm and MatMul(+Add) import to this; `activation`
/// fuses a pointwise function.
///
/// Forward runs `fr_gemm_packed` on the weights the parameter store packed
/// (bias folded in), `fr_gemm_bf16` on their bf16 copy when the pass runs
/// in bf16 (`Precision`; forward and JVP only), or, without that kernel, `fr_gemm_small` for small
/// batches and otherwise bias rows then one SGEMM with beta = 1; the
/// activation runs in place on the cache-hot result. When derivatives are
/// recorded, f'(z) is stored for the JVP (ẏ = f'(z) ⊙ ẋ Wᵀ, one GEMM over
/// batch·k rows) and the VJP (g_z = g ⊙ f'(z); g_x = g_z W; g_W = g_zᵀ x;
/// g_b = Σ_rows g_z). A trainer's VJP runs both products on
/// `fr_linear_backward` (W packed for it once per update by the parameter
/// store); other callers, and CPUs without AVX-512F, on OpenBLAS.
struct LinearOp: GraphOp {
    var weightTransposed: Bool
    var activation: UnaryFunction

    var kindName: String { "Linear" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard (2...3).contains(inputs.count) else {
            throw FlowError.invalidModel("node '\(node)': Linear takes 2...3 inputs, got \(inputs.count)")
        }
        let x = inputs[0], w = inputs[1]
        guard x.isBatched, !w.isBatched, !(inputs.count == 3 && inputs[2].isBatched) else {
            throw FlowError.unsupported("node '\(node)': Linear needs a batched input and constant weights")
        }
        guard let inDim = x.shape.last, w.shape.count == 2 else {
            throw FlowError.shapeMismatch("node '\(node)': Linear needs x [..., in] and a 2-d weight, got \(x.shape) and \(w.shape)")
        }
        let (o, i) = dims(w.shape)
        guard i == inDim else {
            throw FlowError.shapeMismatch("node '\(node)': input has \(inDim) features but the weight \(w.shape) expects \(i)")
        }
        if inputs.count == 3, inputs[2].shape.elementCount != o || inputs[2].shape.count > 2 {
            throw FlowError.shapeMismatch("node '\(node)': bias \(inputs[2].shape) does not match \(o) outputs")
        }
        return Array(x.shape.dropLast()) + [o]
    }

    /// (out, in) of a weight shape.
    func dims(_ w: [Int]) -> (out: Int, in: Int) { weightTransposed ? (w[0], w[1]) : (w[1], w[0]) }

    func flops(_ inputs: [Graph.Value], output: Graph.Value) -> Int {
        let (o, i) = dims(inputs[1].shape)
        return 2 * inputs[0].shape.dropLast().reduce(1, *) * o * i
    }

    func weightPacking(_ inputs: [Graph.Value]) -> WeightPacking? {
        guard inputs[1].shape.count == 2 else { return nil }
        let (o, i) = dims(inputs[1].shape)
        return WeightPacking(input: 1, out: o, in: i, inOutLayout: !weightTransposed)
    }

    /// Geometry of one call: rows of x (all leading axes), in, out.
    private func geometry(_ c: OpContext, rowsPerSample k: Int) -> (rows: Int, in: Int, out: Int) {
        let inDim = c.shape(0).last!, outDim = c.outputShape.last!
        return (c.batch * k * (c.size(0) / inDim), inDim, outDim)
    }

    func forward(_ c: OpContext) {
        let (rows, inDim, outDim) = geometry(c, rowsPerSample: 1)
        let out = c.out
        let bias = c.inputCount == 3 ? UnsafePointer(c.input(2)) : nil
        if let wb = c.packedWeightsBF16 {
            // bf16 products, float32 accumulation and bias (Precision.bf16);
            // without derivatives the activation runs inside, on cache-hot blocks.
            let (kind, p1, p2) = c.record ? UnaryFunction.identity.kernel : activation.kernel
            fr_gemm_bf16(c.input(0), wb, bias, out, rows, outDim, inDim, c.scratchBytes(fr_gemm_bf16_scratch_bytes(inDim)),
                         kind, p1, p2)
            if !c.record { return }
        } else if let wp = c.packedWeights {
            // Prepacked weights: one pass computes x·Wᵀ + b at any batch, and a
            // row's result does not depend on the other rows.
            fr_gemm_packed(c.input(0), wp, bias, out, rows, outDim, inDim)
        } else if rows <= BLAS.smallRows && weightTransposed {
            // Small batches: one pass computes x·Wᵀ + b (weights stay in L1).
            fr_gemm_small(c.input(0), c.input(1), bias, out, rows, outDim, inDim)
        } else {
            var beta: Float = 0
            if let bias {
                for r in 0..<rows { (out + r * outDim).update(from: bias, count: outDim) }
                beta = 1
            }
            BLAS.gemm(transB: weightTransposed, m: rows, n: outDim, k: inDim,
                      a: c.input(0), b: c.input(1), beta: beta, c: out)
        }
        if activation != .identity {
            let (kind, p1, p2) = activation.kernel
            let count = rows * outDim
            if c.record {
                fr_unary_forward_derivative(kind, p1, p2, out, out, c.aux(count), count)
            } else if activation == .silu && c.executor.precision == .bf16 {
                // A float32 layer of a bf16 pass (the narrow first layer): its
                // SiLU in the bf16 layers' form, as its consumer rounds to 2^-9.
                fr_silu_bf16_path(out, count)
            } else {
                fr_unary_forward(kind, p1, p2, out, out, count)
            }
        }
    }

    func jvp(_ c: OpContext) {
        let (rows, inDim, outDim) = geometry(c, rowsPerSample: c.k)
        if let wb = c.packedWeightsBF16 {
            let (none, _, _) = UnaryFunction.identity.kernel
            fr_gemm_bf16(c.tangent(0)!, wb, nil, c.out, rows, outDim, inDim, c.scratchBytes(fr_gemm_bf16_scratch_bytes(inDim)),
                         none, 0, 0)
        } else if let wp = c.packedWeights {
            fr_gemm_packed(c.tangent(0)!, wp, nil, c.out, rows, outDim, inDim)
        } else {
            BLAS.gemm(transB: weightTransposed, m: rows, n: outDim, k: inDim, a: c.tangent(0)!, b: c.input(1), c: c.out)
        }
        if activation != .identity {
            fr_mul_rows_k(c.recorded, c.out, c.out, c.batch, c.k, c.outputSize)
        }
    }

    func vjp(_ c: OpContext) {
        let (rows, inDim, outDim) = geometry(c, rowsPerSample: 1)
        let g = c.out
        // g_z = g ⊙ f'(z), in place (the output gradient is not read again),
        // and g_b += Σ_rows g_z in the same pass, rows in increasing order.
        let gb = c.inputCount == 3 ? c.gradient(2) : nil
        if activation != .identity {
            let d = c.recorded
            if let gb {
                for r in 0..<rows {
                    let gr = g + r * outDim, dr = d + r * outDim
                    for j in 0..<outDim {
                        let v = gr[j] * dr[j]
                        gr[j] = v
                        gb[j] += v
                    }
                }
            } else {
                for i in 0..<(rows * outDim) { g[i] *= d[i] }
            }
        } else if let gb {
            for r in 0..<rows {
                let gr = g + r * outDim
                for j in 0..<outDim { gb[j] += gr[j] }
            }
        }
        let gx = c.gradient(0), gw = c.gradient(1)
        if let wt = c.packedBackwardWeights {
            // Trainers: both products on the register-tile engine with W
            // packed once per update (fr_linear_backward), accumulating.
            if gx != nil || gw != nil {
                fr_linear_backward(g, c.input(0), wt, gx, gw, rows, outDim, inDim, weightTransposed ? 0 : 1,
                                   c.scratch(fr_linear_backward_scratch_floats(rows, outDim, inDim)))
            }
        } else {
            if let gx {
                // transposed: W [out, in], g_x += g_z W; else W [in, out], g_x += g_z Wᵀ.
                BLAS.gemm(transB: !weightTransposed, m: rows, n: inDim, k: outDim, a: g, b: c.input(1), beta: 1, c: gx)
            }
            if let gw {
                if weightTransposed {  // g_W [out, in] += g_zᵀ x
                    BLAS.gemm(transA: true, m: outDim, n: inDim, k: rows, a: g, b: c.input(0), beta: 1, c: gw)
                } else {               // g_W [in, out] += xᵀ g_z
                    BLAS.gemm(transA: true, m: inDim, n: outDim, k: rows, a: c.input(0), b: g, beta: 1, c: gw)
                }
            }
        }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        let out = e.name(n.output)
        let inputs = n.inputs.map(e.name)
        let pre = activation == .identity ? out : e.fresh(out + "/linear")
        if e.graph.values[n.inputs[0]].shape.count == 1 {
            e.node("Gemm", inputs, pre, ["transB": .int(weightTransposed ? 1 : 0), "alpha": .float(1), "beta": .float(1)])
        } else {
            var w = inputs[1]
            if weightTransposed {
                w = e.fresh(w + "/T")
                e.node("Transpose", [inputs[1]], w, ["perm": .ints([1, 0])])
            }
            let mm = inputs.count == 3 ? e.fresh(out + "/matmul") : pre
            e.node("MatMul", [inputs[0], w], mm)
            if inputs.count == 3 { e.node("Add", [mm, inputs[2]], pre) }
        }
        if activation != .identity { try e.unary(activation, pre, out) }
    }

    static var onnxImports: [String: ONNXImportRule] {
        ["Gemm": { i, n, index in try i.gemm(n, index: index) }]
    }
}

extension Operation {
    /// y = f(x · Wᵀ + b) (`weightTransposed`, W `[out, in]`) or f(x · W + b).
    public static func linear(weightTransposed: Bool, activation: UnaryFunction) -> Operation {
        Operation(LinearOp(weightTransposed: weightTransposed, activation: activation))
    }
}

// MARK: ONNX import

extension ONNXImporter {
    /// Gemm: Y = alpha · A · op(B) + beta · C with A batched, B and C constant.
    mutating func gemm(_ n: Node, index: Int) throws {
        guard try int(n, "transA", 0) == 0 else { throw unsupported(n, "transA = 1 (the batched operand must not be transposed)") }
        let transB = try int(n, "transB", 0) != 0
        let alpha = try float(n, "alpha", 1), beta = try float(n, "beta", 1)
        guard case .batched(let a, true) = try input(n, 0) else {
            throw unsupported(n, "input A must be a batched value [batch, in]")
        }
        guard builder.shape(of: a).count == 1 else { throw invalid(n, "A must be 2-D, got per-sample shape \(builder.shape(of: a))") }
        guard case .float(var w, let trainable) = try input(n, 1) else { throw unsupported(n, "input B must be a float constant") }
        guard w.rank == 2 else { throw invalid(n, "B must be 2-D, got \(w.shape)") }
        if alpha != 1 { w.scalars = w.scalars.map { $0 * alpha } }
        let outDim = transB ? w.shape[0] : w.shape[1]
        var bias: Tensor?
        if let c = try optionalInput(n, 2) {
            guard case .float(var ct, _) = c else { throw unsupported(n, "input C must be a float constant") }
            if beta != 1 { ct.scalars = ct.scalars.map { $0 * beta } }
            bias = try biasVector(n, ct, outDim)
        }
        try emitLinear(n, index: index, x: a, weight: w, trainable: trainable, transposed: transB, bias: bias)
    }

    func biasVector(_ n: Node, _ c: Tensor, _ outDim: Int) throws -> Tensor {
        if c.count == outDim && c.shape.filter({ $0 != 1 }).count <= 1 { return c.reshaped([outDim]) }
        if c.count == 1 { return Tensor(shape: [outDim], repeating: c.scalars[0]) }
        throw FlowError.shapeMismatch("node '\(currentNode)': bias of shape \(c.shape) does not broadcast to [\(outDim)]")
    }

    /// Emits one Linear node, absorbing a following bias Add (when the
    /// layer had none) and a following activation pattern.
    mutating func emitLinear(_ n: Node, index: Int, x: ValueID, weight: Tensor, trainable: Bool,
                             transposed: Bool, bias: Tensor?) throws {
        var bias = bias
        var out = n.outputs.first ?? ""
        var bodyNodes: [Int] = []
        let outDim = transposed ? weight.shape[0] : weight.shape[1]
        if bias == nil, let (addIndex, b) = biasAdd(after: out, outDim: outDim) {
            bias = b
            bodyNodes.append(addIndex)
            out = proto.graph.nodes[addIndex].outputs[0]
        }
        var activation = UnaryFunction.identity
        if let m = matchActivation(from: out, exclusive: true) {
            activation = m.function
            bodyNodes += m.nodes
            out = m.output
        }
        let name = n.name.isEmpty ? out : n.name
        var inputs = [x, param(weight, trainable: trainable, name + ".weight")]
        if let bias { inputs.append(param(bias, trainable: true, name + ".bias")) }
        let y = try builder.apply(.linear(weightTransposed: transposed, activation: activation), inputs, name: name)
        values[out] = .batched(y, batchAxis: true)
        done.formUnion(bodyNodes)
    }

    /// An `Add(value, constant [out])` that is the only reader of `value`.
    func biasAdd(after value: String, outDim: Int) -> (Int, Tensor)? {
        guard let r = readers[value], r.count == 1, r[0] >= 0 else { return nil }
        let add = proto.graph.nodes[r[0]]
        guard add.opType == "Add", add.inputs.count == 2 else { return nil }
        let other = add.inputs[0] == value ? add.inputs[1] : add.inputs[0]
        guard case .float(let c, _)? = values[other], c.count == outDim,
              c.shape.filter({ $0 != 1 }).count <= 1, c.rank <= 1 || c.shape.dropLast().allSatisfy({ $0 == 1 }) else { return nil }
        return (r[0], c.reshaped([outDim]))
    }
}
