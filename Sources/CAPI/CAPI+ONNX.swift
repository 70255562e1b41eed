// ONNX import and export, model names and metadata.
import CFlowRT
import FlowRuntime
#if canImport(Glibc)
import Glibc
#endif

func defaultONNXOptions() -> flowrt_onnx_options {
    flowrt_onnx_options(struct_size: UInt32(MemoryLayout<flowrt_onnx_options>.size), x_name: nil, t_name: nil,
                        directory: nil, context_name: nil)
}

/// sizeof(flowrt_onnx_options) before `context_name` was appended (0.1).
let onnxOptionsFirstSize = MemoryLayout<flowrt_onnx_options>.offset(of: \flowrt_onnx_options.context_name)!

/// Import options and the external-data folder from a nullable options struct.
func importOptions(_ p: UnsafePointer<flowrt_onnx_options>?) throws -> (ONNXImportOptions, directory: String?) {
    let o = try readParams(p, defaults: defaultONNXOptions(), firstSize: onnxOptionsFirstSize, "options")
    return (ONNXImportOptions(xName: o.x_name.map { String(cString: $0) }, tName: o.t_name.map { String(cString: $0) },
                              contextName: o.context_name.map { String(cString: $0) }),
            o.directory.map { String(cString: $0) })
}

@_cdecl("flowrt_model_load_onnx")
public func flowrt_model_load_onnx(_ path: UnsafePointer<CChar>?, _ options: UnsafePointer<flowrt_onnx_options>?,
                                   _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_model_load_onnx") {
        let out = try require(out, "out")
        out.pointee = nil
        let path = String(cString: try require(path, "path"))
        let (opts, _) = try importOptions(options)
        out.pointee = retainHandle(ModelHandle(try namingFile(path) { try Model.loadONNX(path: path, options: opts) }))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_model_load_onnx_buffer")
public func flowrt_model_load_onnx_buffer(_ data: UnsafeRawPointer?, _ size: Int,
                                          _ options: UnsafePointer<flowrt_onnx_options>?,
                                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_model_load_onnx_buffer") {
        let out = try require(out, "out")
        out.pointee = nil
        let data = try require(data, "data")
        let n = try count(size, "size")
        let (opts, directory) = try importOptions(options)
        let model = try Model.loadONNX(bytes: UnsafeRawBufferPointer(start: data, count: n), directory: directory, options: opts)
        out.pointee = retainHandle(ModelHandle(model))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_model_save_onnx")
public func flowrt_model_save_onnx(_ model: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> flowrt_status {
    guarded("flowrt_model_save_onnx") {
        let model = try modelObject(model)
        try model.saveONNX(path: String(cString: try require(path, "path")))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_model_export_onnx_buffer")
public func flowrt_model_export_onnx_buffer(_ model: OpaquePointer?, _ bytes: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                            _ size: UnsafeMutablePointer<Int>?) -> flowrt_status {
    guarded("flowrt_model_export_onnx_buffer") {
        let bytes = try require(bytes, "bytes"), size = try require(size, "size")
        bytes.pointee = nil
        size.pointee = 0
        let data = try modelObject(model).onnxData()
        bytes.pointee = try mallocCopy(data)
        size.pointee = data.count
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_model_input_name")
public func flowrt_model_input_name(_ model: OpaquePointer?, _ index: Int,
                                    _ name: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> flowrt_status {
    guarded("flowrt_model_input_name") {
        let name = try require(name, "name")
        name.pointee = nil
        let g = try modelObject(model).graph
        guard index == 0 || index == 1 else { throw FlowError.invalidArgument("index = \(unsigned(index)) must be 0 (x) or 1 (t)") }
        name.pointee = try mallocString(g.values[index == 0 ? g.x : g.t].name)
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_model_output_name")
public func flowrt_model_output_name(_ model: OpaquePointer?,
                                     _ name: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> flowrt_status {
    guarded("flowrt_model_output_name") {
        let name = try require(name, "name")
        name.pointee = nil
        let g = try modelObject(model).graph
        name.pointee = try mallocString(g.values[g.output].name)
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_model_metadata_count")
public func flowrt_model_metadata_count(_ model: OpaquePointer?) -> Int {
    (try? modelObject(model).metadata.count) ?? 0
}

@_cdecl("flowrt_model_metadata_key")
public func flowrt_model_metadata_key(_ model: OpaquePointer?, _ index: Int,
                                      _ key: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> flowrt_status {
    guarded("flowrt_model_metadata_key") {
        let key = try require(key, "key")
        key.pointee = nil
        let keys = try modelObject(model).metadata.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        guard index >= 0, index < keys.count else {
            throw FlowError.invalidArgument("index = \(unsigned(index)) must be below the metadata count \(keys.count)")
        }
        key.pointee = try mallocString(keys[index])
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_model_metadata")
public func flowrt_model_metadata(_ model: OpaquePointer?, _ key: UnsafePointer<CChar>?,
                                  _ value: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> flowrt_status {
    guarded("flowrt_model_metadata") {
        let value = try require(value, "value")
        value.pointee = nil
        let k = String(cString: try require(key, "key"))
        if let v = try modelObject(model).metadata[k] { value.pointee = try mallocString(v) }
        return FLOWRT_OK
    }
}
