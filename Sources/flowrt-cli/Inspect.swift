import ArgumentParser
import FlowRuntime

/// `flowrt inspect MODEL.onnx`: inputs, shapes, op histogram, parameter
/// count, FLOPs per sample, and whether every op is supported.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe an ONNX velocity network: inputs, shapes, ops, parameters, FLOPs, support.")

    @Argument(help: "The ONNX file.") var model: String
    @Option(help: "Name of the input holding x (default: by role).") var xName: String?
    @Option(help: "Name of the input holding t (default: by role).") var tName: String?
    @Option(help: "Name of the input holding the context (default: by role).") var contextName: String?

    func run() throws {
        let info: ONNXInspection
        do {
            info = try ONNXInspection(path: model, options: ONNXImportOptions(xName: xName, tName: tName, contextName: contextName))
        } catch let e as FlowError {
            throw ValidationError("'\(model)': \(e.message)")
        }
        func dims(_ d: [Int64?]) -> String { "[" + d.map { $0.map(String.init) ?? "batch" }.joined(separator: ", ") + "]" }
        print("file:      \(model)")
        print("producer:  \(info.producer.isEmpty ? "-" : info.producer), IR \(info.irVersion), opsets "
              + info.opsets.sorted { $0.key < $1.key }.map { "\($0.key.isEmpty ? "ai.onnx" : $0.key) \($0.value)" }.joined(separator: ", "))
        for p in info.inputs { print("input:     \(p.name) \(p.elementType) \(dims(p.dims))") }
        for p in info.outputs { print("output:    \(p.name) \(p.elementType) \(dims(p.dims))") }
        print("ONNX ops:  " + info.opHistogram.map { "\($0.op) \($0.count)" }.joined(separator: ", "))
        if info.unsupported.isEmpty {
            print("supported: every op")
        } else {
            print("supported: NO — \(info.unsupported.count) node(s): " + info.unsupported.prefix(20).joined(separator: "; "))
        }
        guard let m = info.model else {
            print("import:    failed: \(info.importError ?? "unknown error")")
            throw ExitCode(1)
        }
        print("import:    ok")
        print("sample:    \(m.sampleShape) (d = \(m.dimension))"
              + (m.contextDimension > 0 ? ", context \(m.contextDimension)" + (m.classCount.map { " (\($0) classes)" } ?? "") : ""))
        print("parameters: \(m.parameterCount)")
        let flops = m.graph.flopsPerSample
        print("FLOPs/sample: \(flops) (\(String(format1: Double(flops) / 1e6)) M; Linear, Conv, MatMul)")
        print("IR ops:    " + info.irHistogram.map { "\($0.op) \($0.count)" }.joined(separator: ", "))
        let convs = m.convolutionAlgorithms
        if convs.direct + convs.winograd > 0 {
            print("convolutions: \(convs.winograd) by Winograd F(2x2, 3x3), \(convs.direct) direct")
        }
    }
}

extension String {
    /// One decimal, without Foundation.
    init(format1 x: Double) {
        let r = (x * 10).rounded() / 10
        self = r == r.rounded() ? "\(Int(r)).0" : "\(r)"
    }
}
