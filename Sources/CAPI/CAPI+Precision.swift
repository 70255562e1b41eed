// bfloat16 evaluation: the precision settings of models and flows (issue 17).
import CFlowRT
import FlowRuntime

/// The precision a flow's network evaluations run in for one use.
func effectivePrecision(_ flow: Flow, likelihood: Bool) -> Precision {
    (flow.field as? Model)?.effectivePrecision(likelihood: likelihood) ?? .float32
}

/// Whether `use` means likelihoods; `.invalidArgument` naming it otherwise.
func precisionUse(_ use: Int32) throws -> Bool {
    switch UInt32(bitPattern: use) {
    case FLOWRT_PRECISION_FOR_VELOCITY.rawValue: return false
    case FLOWRT_PRECISION_FOR_LIKELIHOOD.rawValue: return true
    default:
        throw FlowError.invalidArgument("use = \(use) is not a flowrt_precision_use (FLOWRT_PRECISION_FOR_VELOCITY = 0, FLOWRT_PRECISION_FOR_LIKELIHOOD = 1)")
    }
}

/// The `Precision` of a `flowrt_precision` code, or `.invalidArgument`.
func precision(code: Int32) throws -> Precision {
    guard let p = Precision(rawValue: code) else {
        throw FlowError.invalidArgument("precision = \(code) is not a flowrt_precision (FLOWRT_PRECISION_FLOAT32 = 0, FLOWRT_PRECISION_BF16 = 1)")
    }
    return p
}

func setPrecision(_ model: Model, _ use: Int32, _ code: Int32) throws {
    let likelihood = try precisionUse(use)
    model.setPrecision(try precision(code: code), likelihood: likelihood)
}

func getPrecision(_ model: Model, _ use: Int32, _ requested: UnsafeMutablePointer<Int32>?,
                  _ effective: UnsafeMutablePointer<Int32>?) throws {
    let likelihood = try precisionUse(use)
    requested?.pointee = (likelihood ? model.likelihoodPrecision : model.precision).rawValue
    effective?.pointee = model.effectivePrecision(likelihood: likelihood).rawValue
}

/// The model behind a flow, or `.unsupported` (a flow over another field).
func flowModel(_ handle: OpaquePointer?) throws -> Model {
    guard let m = try flowObject(handle).field as? Model else {
        throw FlowError.unsupported("this flow's velocity field is not a network: it has no precision setting")
    }
    return m
}

@_cdecl("flowrt_bf16_available")
public func flowrt_bf16_available() -> Int32 { Precision.bf16Available ? 1 : 0 }

@_cdecl("flowrt_model_set_precision")
public func flowrt_model_set_precision(_ handle: OpaquePointer?, _ use: Int32, _ precision: Int32) -> flowrt_status {
    guarded("flowrt_model_set_precision") {
        try setPrecision(try modelObject(handle), use, precision)
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_model_get_precision")
public func flowrt_model_get_precision(_ handle: OpaquePointer?, _ use: Int32, _ requested: UnsafeMutablePointer<Int32>?,
                                       _ effective: UnsafeMutablePointer<Int32>?) -> flowrt_status {
    guarded("flowrt_model_get_precision") {
        try getPrecision(try modelObject(handle), use, requested, effective)
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_flow_set_precision")
public func flowrt_flow_set_precision(_ handle: OpaquePointer?, _ use: Int32, _ precision: Int32) -> flowrt_status {
    guarded("flowrt_flow_set_precision") {
        try setPrecision(try flowModel(handle), use, precision)
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_flow_get_precision")
public func flowrt_flow_get_precision(_ handle: OpaquePointer?, _ use: Int32, _ requested: UnsafeMutablePointer<Int32>?,
                                      _ effective: UnsafeMutablePointer<Int32>?) -> flowrt_status {
    guarded("flowrt_flow_get_precision") {
        try getPrecision(try flowModel(handle), use, requested, effective)
        return FLOWRT_OK
    }
}
