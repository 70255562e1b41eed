#if canImport(Glibc)
import Glibc
#endif
import CKernels

/// Pointwise y = f(x), f one of `UnaryFunction` (kernels in CKernels,
/// vectorised per ISA). With `record`, f'(x) is cached: JVP ẏ = f'(x) ⊙ ẋ,
/// VJP g_x += g ⊙ f'(x).
struct UnaryOp: GraphOp {
    var function: UnaryFunction

    var kindName: String { "\(function)" }

    func outputShape(_ inputs: [Graph.Value], node: String) throws -> [Int] {
        guard inputs.count == 1 else {
            throw FlowError.invalidModel("node '\(node)': \(kindName) takes 1 input, got \(inputs.count)")
        }
        return inputs[0].shape
    }

    func fold(_ inputs: [Tensor], node: String) throws -> Tensor {
        Tensor(shape: inputs[0].shape, scalars: inputs[0].scalars.map { function($0) })
    }

    func forward(_ c: OpContext) {
        let count = c.batch * c.outputSize
        let (k, p1, p2) = function.kernel
        if c.record {
            fr_unary_forward_derivative(k, p1, p2, c.input(0), c.out, c.aux(count), count)
        } else {
            fr_unary_forward(k, p1, p2, c.input(0), c.out, count)
        }
    }

    func jvp(_ c: OpContext) {
        fr_mul_rows_k(c.recorded, c.tangent(0)!, c.out, c.batch, c.k, c.outputSize)
    }

    func vjp(_ c: OpContext) {
        guard let gx = c.gradient(0) else { return }
        let g = c.out, d = c.recorded
        for i in 0..<(c.batch * c.outputSize) { gx[i] += g[i] * d[i] }
    }

    func exportONNX(_ e: inout ONNXExporter, _ n: Graph.Node) throws {
        try e.unary(function, e.name(n.inputs[0]), e.name(n.output))
    }

    static var onnxImports: [String: ONNXImportRule] {
        var rules: [String: ONNXImportRule] = [:]
        for op in ["Relu", "Tanh", "Sigmoid", "Erf", "Exp", "Log", "Sqrt", "Neg", "Sin", "Cos", "Abs", "Reciprocal",
                   "LeakyRelu", "Elu", "Selu", "Softplus", "Gelu", "HardSigmoid", "HardSwish", "Mish"] {
            rules[op] = { importer, n, index in
                if try importer.fuseStandaloneActivation(n, index: index) { return }
                try importer.unary(n, try importer.unaryFunction(n))
            }
        }
        rules["Pow"] = { i, n, _ in try i.pow(n) }
        rules["Clip"] = { i, n, _ in try i.clip(n) }
        rules["PRelu"] = { i, n, _ in try i.prelu(n) }
        return rules
    }
}

extension Operation {
    /// Pointwise function.
    public static func unary(_ f: UnaryFunction) -> Operation { Operation(UnaryOp(function: f)) }
}

/// Pointwise functions. The derivative of each is known in closed form; the
/// kernels live in the C target CKernels (vectorised per ISA).
public enum UnaryFunction: Sendable, Equatable, Hashable {
    case identity, relu, sigmoid, tanh, silu, selu, gelu, geluTanh
    case leakyRelu(slope: Float)
    case elu(alpha: Float)
    /// (1/β) log(1 + exp(βx)), and x where βx > threshold (PyTorch's definition).
    case softplus(beta: Float, threshold: Float)
    case erf, exp, log, sqrt, neg, sin, cos, square, reciprocal, abs
    /// x^p for a constant p.
    case pow(Float)
    /// max(0, min(1, αx + β)) (ONNX HardSigmoid; PyTorch's hardsigmoid is α = 1/6, β = 1/2).
    case hardSigmoid(alpha: Float, beta: Float)
    /// x · max(0, min(1, x/6 + 1/2)).
    case hardSwish
    /// min(max(x, lower), upper) (Clip; ReLU6 is 0 … 6).
    case clip(lower: Float, upper: Float)
    /// x · tanh(softplus(x)).
    case mish
}

extension UnaryFunction {
    /// The CKernels kind and its two parameters.
    var kernel: (Int32, Float, Float) {
        switch self {
        case .identity: return (Int32(FR_IDENTITY.rawValue), 0, 0)
        case .relu: return (Int32(FR_RELU.rawValue), 0, 0)
        case .leakyRelu(let s): return (Int32(FR_LEAKY_RELU.rawValue), s, 0)
        case .elu(let a): return (Int32(FR_ELU.rawValue), a, 0)
        case .selu: return (Int32(FR_SELU.rawValue), 0, 0)
        case .sigmoid: return (Int32(FR_SIGMOID.rawValue), 0, 0)
        case .tanh: return (Int32(FR_TANH.rawValue), 0, 0)
        case .silu: return (Int32(FR_SILU.rawValue), 0, 0)
        case .softplus(let b, let th): return (Int32(FR_SOFTPLUS.rawValue), b, th)
        case .gelu: return (Int32(FR_GELU.rawValue), 0, 0)
        case .geluTanh: return (Int32(FR_GELU_TANH.rawValue), 0, 0)
        case .erf: return (Int32(FR_ERF.rawValue), 0, 0)
        case .exp: return (Int32(FR_EXP.rawValue), 0, 0)
        case .log: return (Int32(FR_LOG.rawValue), 0, 0)
        case .sqrt: return (Int32(FR_SQRT.rawValue), 0, 0)
        case .neg: return (Int32(FR_NEG.rawValue), 0, 0)
        case .sin: return (Int32(FR_SIN.rawValue), 0, 0)
        case .cos: return (Int32(FR_COS.rawValue), 0, 0)
        case .square: return (Int32(FR_SQUARE.rawValue), 0, 0)
        case .reciprocal: return (Int32(FR_RECIPROCAL.rawValue), 0, 0)
        case .abs: return (Int32(FR_ABS.rawValue), 0, 0)
        case .pow(let p): return (Int32(FR_POW.rawValue), p, 0)
        case .hardSigmoid(let a, let b): return (Int32(FR_HARD_SIGMOID.rawValue), a, b)
        case .hardSwish: return (Int32(FR_HARD_SWISH.rawValue), 0, 0)
        case .clip(let lo, let hi): return (Int32(FR_CLIP.rawValue), lo, hi)
        case .mish: return (Int32(FR_MISH.rawValue), 0, 0)
        }
    }

    /// f(x) for one value (constant folding, tests).
    public func callAsFunction(_ x: Float) -> Float {
        var y: Float = 0
        var v = x
        let (k, p1, p2) = kernel
        fr_unary_forward(k, p1, p2, &v, &y, 1)
        return y
    }

    /// f'(x) for one value.
    public func derivative(_ x: Float) -> Float {
        var y: Float = 0
        var v = x
        let (k, p1, p2) = kernel
        fr_unary_derivative(k, p1, p2, &v, &y, 1)
        return y
    }
}

// MARK: ONNX

extension ONNXImporter {
    func unaryFunction(_ n: Node) throws -> UnaryFunction {
        switch n.opType {
        case "Relu": return .relu
        case "Tanh": return .tanh
        case "Sigmoid": return .sigmoid
        case "Erf": return .erf
        case "Exp": return .exp
        case "Log": return .log
        case "Sqrt": return .sqrt
        case "Neg": return .neg
        case "Sin": return .sin
        case "Cos": return .cos
        case "Abs": return .abs
        case "Reciprocal": return .reciprocal
        case "LeakyRelu": return .leakyRelu(slope: try float(n, "alpha", 0.01))
        case "Elu": return .elu(alpha: try float(n, "alpha", 1))
        case "Selu":
            let alpha = try float(n, "alpha", 1.67326319217681884765625)
            let gamma = try float(n, "gamma", 1.05070102214813232421875)
            guard abs(alpha - 1.6732632) < 1e-5, abs(gamma - 1.0507010) < 1e-5 else {
                throw unsupported(n, "Selu with alpha \(alpha), gamma \(gamma) (only the standard constants)")
            }
            return .selu
        case "Softplus": return .softplus(beta: 1, threshold: .infinity)
        case "HardSigmoid": return .hardSigmoid(alpha: try float(n, "alpha", 0.2), beta: try float(n, "beta", 0.5))
        case "HardSwish": return .hardSwish
        case "Mish": return .mish
        case "Gelu":
            let approximate = n.attributes["approximate"]?.s ?? "none"
            switch approximate {
            case "none": return .gelu
            case "tanh": return .geluTanh
            default: throw unsupported(n, "Gelu approximate='\(approximate)'")
            }
        default: throw unsupported(n, "not a pointwise function")
        }
    }

    mutating func unary(_ n: Node, _ f: UnaryFunction) throws {
        switch try input(n, 0) {
        case .batched(let id, let axis):
            try set(n, .batched(try builder.apply(.unary(f), [id], name: currentNode), batchAxis: axis))
        case .float(let t, _):
            try set(n, .float(Tensor(shape: t.shape, scalars: t.scalars.map { f($0) }), trainable: false))
        case .ints:
            throw unsupported(n, "on an integer tensor")
        }
    }

    /// Clip: bounds from attributes (opset < 11) or optional scalar
    /// constant inputs 1 and 2 (absent: unbounded).
    mutating func clip(_ n: Node) throws {
        var bounds: [Float] = [-.infinity, .infinity]
        if opset < 11 {
            bounds = [try float(n, "min", -.infinity), try float(n, "max", .infinity)]
        } else {
            for i in 1...2 where i < n.inputs.count && !n.inputs[i].isEmpty {
                guard case .float(let t, _) = try input(n, i), t.count == 1, !t.scalars[0].isNaN else {
                    throw unsupported(n, "bound \(i) must be a scalar float constant")
                }
                bounds[i - 1] = t.scalars[0]
            }
        }
        guard bounds[0] <= bounds[1] else { throw invalid(n, "min \(bounds[0]) above max \(bounds[1])") }
        try unary(n, .clip(lower: bounds[0], upper: bounds[1]))
    }

    /// PRelu(x, slope) = relu(x) − slope ⊙ relu(−x): the same values (x, or
    /// slope·x, one rounding) with the slope a trainable constant that
    /// broadcasts as Mul's operands do (PyTorch: [C, 1, 1] or one value).
    mutating func prelu(_ n: Node) throws {
        guard case .batched(let x, let axis) = try input(n, 0) else { throw unsupported(n, "PRelu of a constant") }
        guard case .float = try input(n, 1) else { throw unsupported(n, "the slope must be a float constant") }
        let positive = try builder.apply(.unary(.relu), [x], name: currentNode + "/positive")
        let negated = try builder.apply(.unary(.neg), [x], name: currentNode + "/negated")
        let negative = try builder.apply(.unary(.relu), [negated], name: currentNode + "/negative")
        let (ids, _) = try aligned(n, [.batched(negative, batchAxis: axis), try input(n, 1)])
        let scaled = try builder.apply(.binary(.mul), ids, name: currentNode + "/scaled")
        try set(n, .batched(try builder.apply(.binary(.sub), [positive, scaled], name: currentNode), batchAxis: axis))
    }

    mutating func pow(_ n: Node) throws {
        let base = try input(n, 0)
        guard case .float(let e, _) = try input(n, 1), e.count == 1 else {
            throw unsupported(n, "the exponent must be a scalar float constant")
        }
        let p = e.scalars[0]
        switch base {
        case .batched:
            let f: UnaryFunction = p == 2 ? .square : p == 0.5 ? .sqrt : p == 1 ? .identity : p == -1 ? .reciprocal : .pow(p)
            try unary(n, f)
        case .float(let t, _):
            try set(n, .float(Tensor(shape: t.shape, scalars: t.scalars.map { Float(Glibc.pow(Double($0), Double(p))) }), trainable: false))
        case .ints:
            throw unsupported(n, "on an integer tensor")
        }
    }

}

extension ONNXExporter {
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
        case .leakyRelu(let slope): node("LeakyRelu", [x], y, ["alpha": .float(slope)])
        case .hardSigmoid(let a, let b): node("HardSigmoid", [x], y, ["alpha": .float(a), "beta": .float(b)])
        case .hardSwish: node("HardSwish", [x], y)
        case .clip(let lo, let hi): node("Clip", [x, scalar(lo), scalar(hi)], y)
        case .mish:
            // x · tanh(softplus(x)) in opset-17 ops (Mish itself is opset 18).
            let s = tmp("softplus"), th = tmp("tanh")
            node("Softplus", [x], s)
            node("Tanh", [s], th)
            node("Mul", [x, th], y)
        case .elu(let alpha): node("Elu", [x], y, ["alpha": .float(alpha)])
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
