// Params-struct initialisers: defaults written up to the caller's
// struct_size, so a newer library never writes past an older caller's
// struct (the header's static inline *_default_params() wrap these).
import CFlowRT
import FlowRuntime

@_cdecl("flowrt_mlp_params_init")
public func flowrt_mlp_params_init(_ params: UnsafeMutablePointer<flowrt_mlp_params>?) -> flowrt_status {
    guarded("flowrt_mlp_params_init") { try initParams(params, defaults: defaultMLPParams(), firstSize: MemoryLayout<flowrt_mlp_params>.size, "params") }
}

@_cdecl("flowrt_onnx_options_init")
public func flowrt_onnx_options_init(_ params: UnsafeMutablePointer<flowrt_onnx_options>?) -> flowrt_status {
    guarded("flowrt_onnx_options_init") { try initParams(params, defaults: defaultONNXOptions(), firstSize: onnxOptionsFirstSize, "params") }
}

@_cdecl("flowrt_flow_params_init")
public func flowrt_flow_params_init(_ params: UnsafeMutablePointer<flowrt_flow_params>?) -> flowrt_status {
    guarded("flowrt_flow_params_init") { try initParams(params, defaults: defaultFlowParams(), firstSize: flowParamsFirstSize, "params") }
}

@_cdecl("flowrt_solver_params_init")
public func flowrt_solver_params_init(_ params: UnsafeMutablePointer<flowrt_solver_params>?) -> flowrt_status {
    guarded("flowrt_solver_params_init") { try initParams(params, defaults: defaultSolverParams(), firstSize: solverParamsFirstSize, "params") }
}

@_cdecl("flowrt_trainer_params_init")
public func flowrt_trainer_params_init(_ params: UnsafeMutablePointer<flowrt_trainer_params>?) -> flowrt_status {
    guarded("flowrt_trainer_params_init") { try initParams(params, defaults: defaultTrainerParams(), knownSizes: trainerParamsSizes, "params") }
}

@_cdecl("flowrt_sde_params_init")
public func flowrt_sde_params_init(_ params: UnsafeMutablePointer<flowrt_sde_params>?) -> flowrt_status {
    guarded("flowrt_sde_params_init") { try initParams(params, defaults: defaultSDEParams(), firstSize: sdeParamsFirstSize, "params") }
}
