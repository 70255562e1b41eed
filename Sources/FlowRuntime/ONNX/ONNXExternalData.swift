/// Where an initializer's external data (`*.onnx.data`) may live.
enum ONNXExternalData {
    /// Resolves an external-data `location` against `directory`.
    /// - Throws: `.invalidModel` when the location is absolute, empty, or has
    ///   a `..` component (it would escape the model's folder).
    static func path(_ location: String, in directory: String, tensor: String) throws -> String {
        let parts = location.split(separator: "/", omittingEmptySubsequences: false)
        guard !location.isEmpty, !location.hasPrefix("/"), !location.contains("\0"),
              !parts.contains(where: { $0 == ".." }) else {
            throw FlowError.invalidModel(
                "tensor '\(tensor)': external data location '\(location)' must be a relative path inside the model's folder")
        }
        return directory + "/" + location
    }
}
