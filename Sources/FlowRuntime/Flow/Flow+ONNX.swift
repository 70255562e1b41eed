/// A saved flow is a complete flow: the network plus `flowrt.*` metadata
/// naming the interpolant (with its coefficients for a learned Fourier
/// schedule: `ScheduleMetadata`) and the base density (the exporter adds
/// flowrt.dimension and flowrt.time_convention), so `loadONNX` rebuilds the
/// same flow.
///
/// The one exception is a host-supplied schedule (`CallbackSchedule`): a
/// file records only its name, "custom". Loading such a file gives a flow
/// without a schedule: sampling, transport, encoding and log-densities need
/// only the velocity and work; the score and the SDE sampler throw
/// `.unsupported` until the flow is rebuilt from its model with the schedule
/// (`Flow(field: model, schedule: CallbackSchedule { … })`).
extension Flow {
    /// Metadata keys written and read by flow files.
    public enum MetadataKey {
        public static let interpolant = ScheduleMetadata.interpolantKey
        public static let base = "flowrt.base"
    }

    /// The name `flowrt.interpolant` records for a host-supplied schedule
    /// (`CallbackSchedule`'s default name).
    public static let customInterpolant = ScheduleMetadata.customName

    /// The interpolant's name: the schedule's, or, for a flow loaded from a
    /// file whose schedule cannot be rebuilt, what its model's metadata
    /// records ("custom"); nil when neither is known.
    public var interpolantName: String? {
        schedule?.name ?? (field as? Model)?.metadata[MetadataKey.interpolant]
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
        if let schedule {
            meta = ScheduleMetadata.recording(schedule, in: meta)
        } else {
            // A flow loaded without its schedule keeps the name its file recorded.
            meta[MetadataKey.interpolant] = interpolantName ?? ScheduleKind.trig.rawValue
        }
        meta[MetadataKey.base] = "standard_normal"
        return try model.withMetadata(meta)
    }

    /// Writes the flow as one self-contained ONNX file (temporary file, then rename).
    public func saveONNX(path: String) throws {
        try modelForExport().saveONNX(path: path)
    }

    /// A flow around a loaded model, with the interpolant its metadata names
    /// (`trig` when absent, e.g. a network exported by PyTorch; a Fourier
    /// schedule with the recorded coefficients) and a standard normal base.
    /// For "custom" (a host-supplied schedule) the flow has no schedule: see
    /// the type's comment.
    /// - Throws: `.invalidModel` for an unknown interpolant or base, or
    ///   malformed Fourier coefficients, in the metadata (`ScheduleMetadata`).
    public convenience init(model: Model) throws {
        let schedule = try ScheduleMetadata.schedule(from: model.metadata)
        let base = model.metadata[MetadataKey.base] ?? "standard_normal"
        guard base == "standard_normal" else {
            throw FlowError.invalidModel("\(MetadataKey.base) = '\(base)' is not a base density this version can rebuild")
        }
        try self.init(field: model, schedule: schedule)
    }
}
