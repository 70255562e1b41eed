/// A saved flow is a complete flow: the network plus `flowrt.*` metadata
/// naming the interpolant and the base density (the exporter adds
/// flowrt.dimension and flowrt.time_convention), so `loadONNX` rebuilds the
/// same flow.
extension Flow {
    /// Metadata keys written and read by flow files.
    public enum MetadataKey {
        public static let interpolant = "flowrt.interpolant"
        public static let base = "flowrt.base"
    }

    /// The model with the flow's description merged into its metadata.
    /// - Throws: `.unsupported` when the flow's field is not a network
    ///   (`Model`) or its base is not the standard normal.
    public func modelForExport() throws -> Model {
        guard let model = field as? Model else {
            throw FlowError.unsupported("only flows whose velocity is a network can be saved as ONNX")
        }
        guard base is StandardNormal else {
            throw FlowError.unsupported("only flows with a standard normal base can be saved as ONNX for now")
        }
        var meta = model.metadata
        meta[MetadataKey.interpolant] = schedule?.name ?? "trig"
        meta[MetadataKey.base] = "standard_normal"
        return try model.withMetadata(meta)
    }

    /// Writes the flow as one self-contained ONNX file (temporary file, then rename).
    public func saveONNX(path: String) throws {
        try modelForExport().saveONNX(path: path)
    }

    /// A flow around a loaded model, with the interpolant its metadata names
    /// (`trig` when absent, e.g. a network exported by PyTorch) and a
    /// standard normal base.
    /// - Throws: `.invalidModel` for an unknown interpolant or base in the metadata.
    public convenience init(model: Model) throws {
        let schedule: any Schedule
        switch model.metadata[MetadataKey.interpolant] ?? "trig" {
        case "trig": schedule = TrigSchedule()
        case "linear": schedule = LinearSchedule()
        case let other:
            throw FlowError.invalidModel("\(MetadataKey.interpolant) = '\(other)' is not an interpolant this version can rebuild (trig, linear)")
        }
        let base = model.metadata[MetadataKey.base] ?? "standard_normal"
        guard base == "standard_normal" else {
            throw FlowError.invalidModel("\(MetadataKey.base) = '\(base)' is not a base density this version can rebuild")
        }
        try self.init(field: model, schedule: schedule)
    }
}
