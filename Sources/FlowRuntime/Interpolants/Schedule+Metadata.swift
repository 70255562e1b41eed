/// How a schedule is recorded in model metadata (ONNX `metadata_props`), and
/// read back: the one place that knows the keys and the text format, used by
/// `Trainer.model()` (a trained network names its schedule) and by
/// `Flow.modelForExport()` / `Flow(model:)` (a saved flow is a complete flow).
///
///     flowrt.interpolant     "trig" | "linear" | "fourier" | "custom"
///     flowrt.fourier.alpha   a_1,…,a_K  (fourier only)
///     flowrt.fourier.beta    b_1,…,b_K  (fourier only)
///
/// Coefficients are written with Swift's shortest round-trip form of a
/// `Double`, so a schedule read back is bit-identical to the one written.
public enum ScheduleMetadata {
    public static let interpolantKey = "flowrt.interpolant"
    public static let fourierAlphaKey = "flowrt.fourier.alpha"
    public static let fourierBetaKey = "flowrt.fourier.beta"
    /// The name recorded for a host-supplied schedule (`CallbackSchedule`'s default).
    public static let customName = "custom"
    /// The most Fourier terms a file may declare (a guard against absurd
    /// metadata; the optimiser uses a handful).
    public static let maximumFourierTerms = 4096

    /// `metadata` with the entries describing `schedule`: its name, and for a
    /// `FourierSchedule` its coefficients; stale coefficient entries (from a
    /// file the model was loaded from) are removed for other schedules.
    public static func recording(_ schedule: any Schedule, in metadata: [String: String]) -> [String: String] {
        var meta = metadata
        meta[interpolantKey] = schedule.name
        if let fourier = schedule as? FourierSchedule {
            meta[fourierAlphaKey] = fourier.alphaCoefficients.map(\.description).joined(separator: ",")
            meta[fourierBetaKey] = fourier.betaCoefficients.map(\.description).joined(separator: ",")
        } else {
            meta[fourierAlphaKey] = nil
            meta[fourierBetaKey] = nil
        }
        return meta
    }

    /// The schedule `metadata` describes: `trig` when no interpolant is
    /// recorded (a network exported by PyTorch), nil for "custom" (a host
    /// schedule, which a file cannot hold).
    /// - Throws: `.invalidModel` naming the key for an unknown interpolant,
    ///   or for fourier, missing, malformed (not a comma-separated list of
    ///   numbers), non-finite, too many (> `maximumFourierTerms`) or
    ///   unequal-length coefficient lists.
    public static func schedule(from metadata: [String: String]) throws -> (any Schedule)? {
        let name = metadata[interpolantKey] ?? ScheduleKind.trig.rawValue
        if let kind = ScheduleKind(rawValue: name) { return kind.schedule }
        switch name {
        case customName:
            return nil
        case FourierSchedule.metadataName:
            let a = try coefficients(metadata, fourierAlphaKey), b = try coefficients(metadata, fourierBetaKey)
            guard a.count == b.count else {
                throw FlowError.invalidModel("\(fourierAlphaKey) has \(a.count) coefficients but \(fourierBetaKey) has \(b.count); a fourier interpolant needs as many of each")
            }
            return try FourierSchedule(alphaCoefficients: a, betaCoefficients: b)
        default:
            let known = ScheduleKind.allCases.map(\.rawValue) + [FourierSchedule.metadataName]
            throw FlowError.invalidModel("\(interpolantKey) = '\(name)' is not an interpolant this version can rebuild (\(known.joined(separator: ", ")), or \(customName) without its schedule)")
        }
    }

    /// A coefficient list: up to `maximumFourierTerms` finite numbers
    /// separated by commas (spaces around them are allowed; "" is none).
    static func coefficients(_ metadata: [String: String], _ key: String) throws -> [Double] {
        guard let text = metadata[key] else {
            throw FlowError.invalidModel("\(interpolantKey) = 'fourier' but \(key) is missing (the coefficient list, e.g. \"0.1,-0.05\")")
        }
        if text.isEmpty { return [] }  // K = 0: the linear schedule
        let fields = text.split(separator: ",", omittingEmptySubsequences: false)
        guard fields.count <= maximumFourierTerms else {
            throw FlowError.invalidModel("\(key) lists \(fields.count) coefficients; at most \(maximumFourierTerms) are accepted")
        }
        var values: [Double] = []
        for (i, field) in fields.enumerated() {
            let trimmed = field.trimmingSpaces
            guard let v = Double(trimmed) else {
                throw FlowError.invalidModel("\(key): coefficient \(i + 1) '\(trimmed.prefix(40))' is not a number (expected a comma-separated list of numbers)")
            }
            guard v.isFinite else { throw FlowError.invalidModel("\(key): coefficient \(i + 1) is \(v); coefficients must be finite") }
            values.append(v)
        }
        return values
    }
}

extension FourierSchedule {
    /// The name a Fourier schedule records (`flowrt.interpolant`).
    public static let metadataName = "fourier"
}
