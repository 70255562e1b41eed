// Flows as ONNX files: save with the flow's description, load back.
import CFlowRT
import FlowRuntime

@_cdecl("flowrt_flow_save_onnx")
public func flowrt_flow_save_onnx(_ flow: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> flowrt_status {
    guarded("flowrt_flow_save_onnx") {
        let flow = try flowObject(flow)
        try flow.saveONNX(path: String(cString: try require(path, "path")))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_flow_load_onnx")
public func flowrt_flow_load_onnx(_ path: UnsafePointer<CChar>?, _ options: UnsafePointer<flowrt_onnx_options>?,
                                  _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_flow_load_onnx") {
        let out = try require(out, "out")
        out.pointee = nil
        let path = String(cString: try require(path, "path"))
        let (opts, _) = try importOptions(options)
        out.pointee = retainHandle(FlowHandle(try namingFile(path) { try Flow(model: try Model.loadONNX(path: path, options: opts)) }))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_flow_model")
public func flowrt_flow_model(_ flow: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_flow_model") {
        let out = try require(out, "out")
        out.pointee = nil
        out.pointee = retainHandle(ModelHandle(try flowObject(flow).modelForExport()))
        return FLOWRT_OK
    }
}
