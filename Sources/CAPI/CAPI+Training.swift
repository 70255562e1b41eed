// flowrt_trainer: create, step, fit, snapshot, losses, checkpoints.
import CFlowRT
import FlowRuntime

/// The object behind a `flowrt_trainer *`.
/// A path-length trainer (flowrt_trainer_create_path_length) also holds its
/// optimiser, which steps the network and the schedule.
final class TrainerHandle {
    let trainer: Trainer
    let pathOptimizer: PathLengthOptimizer?
    init(_ trainer: Trainer) { self.trainer = trainer; pathOptimizer = nil }
    /// A trainer with the coupling its params ask for.
    convenience init(_ trainer: Trainer, _ p: flowrt_trainer_params) throws {
        trainer.coupling = try minibatchCoupling(p.coupling, "params->coupling")
        self.init(trainer)
    }
    init(_ optimizer: PathLengthOptimizer) { trainer = optimizer.trainer; pathOptimizer = optimizer }

    /// Fails for a path-length trainer, naming `call` and why.
    func refusePathLength(_ call: String, _ reason: String) throws {
        guard pathOptimizer == nil else { throw FlowError.unsupported("\(call) is not available for a path-length trainer: \(reason)") }
    }
}

/// A `flowrt_coupling` code (params->coupling, flowrt_trainer_set_coupling).
/// - Throws: `.invalidArgument` naming `name` for an unknown code.
func minibatchCoupling(_ code: Int32, _ name: String) throws -> MinibatchCoupling? {
    switch UInt32(bitPattern: code) {
    case FLOWRT_COUPLING_INDEPENDENT.rawValue: return nil
    case FLOWRT_COUPLING_EXACT_OT.rawValue: return .exact
    default: throw FlowError.invalidArgument("\(name) = \(code) is not a flowrt_coupling")
    }
}

func trainerObject(_ handle: OpaquePointer?) throws -> Trainer {
    try object(handle, TrainerHandle.self, "trainer").trainer
}

func defaultTrainerParams() -> flowrt_trainer_params {
    flowrt_trainer_params(
        struct_size: UInt32(MemoryLayout<flowrt_trainer_params>.size),
        interpolant: Int32(FLOWRT_INTERPOLANT_TRIG.rawValue), learning_rate: 1e-3, batch_size: 1024,
        optimizer: Int32(FLOWRT_OPTIMIZER_ADAM.rawValue), weight_decay: 0, warmup_steps: 0,
        lr_schedule: Int32(FLOWRT_LR_CONSTANT.rawValue), total_steps: 0, lr_min_factor: 0.01,
        step_every: 1000, step_factor: 0.5, grad_clip: 0, ema_decay: 0.999, heldout_fraction: 0.1,
        seed: 0, threads: 0, time_beta_a: 0, time_beta_b: 0, schedule_fn: nil, schedule_user_data: nil,
        label_dropout: 0, coupling: Int32(FLOWRT_COUPLING_INDEPENDENT.rawValue))
}

/// Converts C params into the Swift configuration and schedule; every range
/// check happens in `TrainerConfiguration.validate()` or here.
func trainerSettings(_ p: flowrt_trainer_params) throws -> (TrainerConfiguration, InterpolantLoss) {
    let schedule = try interpolantSchedule(p.interpolant, function: p.schedule_fn, userData: p.schedule_user_data)
    let kind: OptimizerConfiguration.Kind
    switch UInt32(bitPattern: p.optimizer) {
    case FLOWRT_OPTIMIZER_ADAM.rawValue: kind = .adam
    case FLOWRT_OPTIMIZER_ADAMW.rawValue: kind = .adamW
    default: throw FlowError.invalidArgument("params->optimizer = \(p.optimizer) is not a flowrt_optimizer")
    }
    guard p.total_steps < 1 << 62, p.step_every < 1 << 62 else {
        throw FlowError.invalidArgument("params->total_steps / step_every are too large")
    }
    let decay: LearningRateSchedule.Decay
    switch UInt32(bitPattern: p.lr_schedule) {
    case FLOWRT_LR_CONSTANT.rawValue: decay = .constant
    case FLOWRT_LR_COSINE.rawValue:
        guard p.total_steps > 0 else { throw FlowError.invalidArgument("params->total_steps must be > 0 for FLOWRT_LR_COSINE") }
        decay = .cosine(totalSteps: Int(p.total_steps), minimumFactor: p.lr_min_factor)
    case FLOWRT_LR_STEP.rawValue: decay = .step(every: Int(p.step_every), factor: p.step_factor)
    default: throw FlowError.invalidArgument("params->lr_schedule = \(p.lr_schedule) is not a flowrt_lr_schedule")
    }
    let time: TimeDistribution
    switch (p.time_beta_a, p.time_beta_b) {
    case (0, 0): time = .uniform
    case let (a, b): time = .beta(a, b)
    }
    guard p.threads <= Limits.threads.upperBound else {
        throw FlowError.invalidArgument("params->threads = \(p.threads) must be ≤ \(Limits.threads.upperBound) (0 = all processors)")
    }
    let config = TrainerConfiguration(
        batchSize: Int(p.batch_size),
        learningRate: LearningRateSchedule(learningRate: p.learning_rate, warmupSteps: Int(p.warmup_steps), decay: decay),
        optimizer: OptimizerConfiguration(kind: kind, weightDecay: p.weight_decay),
        gradientClip: p.grad_clip == 0 ? nil : p.grad_clip,
        emaDecay: p.ema_decay, heldOutFraction: p.heldout_fraction,
        timeDistribution: time, seed: p.seed,
        threads: p.threads == 0 ? Parallel.defaultThreads : Int(p.threads),
        labelDropout: p.label_dropout)
    try config.validate()
    return (config, InterpolantLoss(schedule: schedule, timeDistribution: time))
}

/// The checks every trainer constructor over float samples starts with, in
/// this order: `out` (reset to NULL), the model `init`, `n` and `dim`,
/// `dim` against the model, then `modelCheck` (what this constructor needs
/// of the model), then `data` [n, dim] present and finite.
func trainerData(_ initial: OpaquePointer?, _ data: UnsafePointer<Float>?, _ n: Int, _ dim: Int,
                 _ out: UnsafeMutablePointer<OpaquePointer?>?, modelCheck: (Model) throws -> Void) throws
    -> (out: UnsafeMutablePointer<OpaquePointer?>, model: Model, rows: Int, x: UnsafePointer<Float>, total: Int) {
    let out = try require(out, "out")
    out.pointee = nil
    let model = try modelObject(initial, "init")
    let rows = try count(n, "n"), d = try count(dim, "dim")
    guard d == model.dimension else {
        throw FlowError.shapeMismatch("dim = \(d) but the model's dimension is \(model.dimension)")
    }
    try modelCheck(model)
    let total = try checkedProduct(rows, d, "data")
    let x = try require(data, "data")
    try requireFinite(x, total, "data")
    return (out, model, rows, x, total)
}

@_cdecl("flowrt_trainer_create")
public func flowrt_trainer_create(_ initial: OpaquePointer?, _ data: UnsafePointer<Float>?, _ n: Int, _ dim: Int,
                                  _ params: UnsafePointer<flowrt_trainer_params>?,
                                  _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_trainer_create") {
        let (out, model, _, x, total) = try trainerData(initial, data, n, dim, out) { model in
            guard model.contextDimension == 0 else {
                throw FlowError.invalidArgument("the model is conditional (\(model.contextDimension) context values per sample): call flowrt_trainer_create_conditional with a context [n, \(model.contextDimension)]")
            }
        }
        let p = try readParams(params, defaults: defaultTrainerParams(), knownSizes: trainerParamsSizes, "params")
        let (config, loss) = try trainerSettings(p)
        // The copy and the trainer's split of it: twice the data, reserved
        // through the checked path (a refusal is FLOWRT_OUT_OF_MEMORY).
        try HostMemory.reserve(2 * total, of: Float.self, for: "flowrt_trainer_create (copy of the data)")
        let trainer = try Trainer(graph: model.graph, data: .samples(Array(UnsafeBufferPointer(start: x, count: total))),
                                  loss: loss, configuration: config, metadata: model.metadata)
        out.pointee = retainHandle(try TrainerHandle(trainer, p))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_create_images")
public func flowrt_trainer_create_images(_ initial: OpaquePointer?, _ pixels: UnsafePointer<UInt8>?, _ n: Int, _ dim: Int,
                                         _ params: UnsafePointer<flowrt_trainer_params>?,
                                         _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_trainer_create_images") {
        let out = try require(out, "out")
        out.pointee = nil
        let model = try modelObject(initial, "init")
        let rows = try count(n, "n"), d = try count(dim, "dim")
        let shape = model.sampleShape
        guard d == model.dimension else {
            throw FlowError.shapeMismatch("dim = \(d) but the model's images are \(shape.map(String.init).joined(separator: "×")) = \(model.dimension) values")
        }
        guard shape.count == 3 || shape.count == 2 else {
            throw FlowError.shapeMismatch("the model's samples have shape \(shape), not an image [C, H, W] or [H, W]")
        }
        guard model.contextDimension == 0 else {
            throw FlowError.unsupported("the model is conditional: dequantize the images (flowrt images readers) and call flowrt_trainer_create_conditional with their labels")
        }
        let total = try checkedProduct(rows, d, "pixels")
        let bytes = try require(pixels, "pixels")
        let p = try readParams(params, defaults: defaultTrainerParams(), knownSizes: trainerParamsSizes, "params")
        let (config, loss) = try trainerSettings(p)
        let held = Int((Double(rows) * p.heldout_fraction).rounded(.down))
        guard held < rows else {
            throw FlowError.invalidArgument("n = \(unsigned(rows)) with heldout_fraction \(p.heldout_fraction) leaves no training image")
        }
        // The copy of the pixels and the held-out images as floats.
        try HostMemory.reserve(total, of: UInt8.self, for: "flowrt_trainer_create_images (copy of the pixels)")
        try HostMemory.reserve(held * d, of: Float.self, for: "flowrt_trainer_create_images (held-out images)")
        let images = PixelArray(shape: [rows] + (shape.count == 2 ? [1] + shape : shape),
                                bytes: Array(UnsafeBufferPointer(start: bytes, count: total)))
        let (data, _) = try TrainingData.images(images, heldOut: held, seed: p.seed, batchSize: config.batchSize)
        let trainer = try Trainer(graph: model.graph, data: data, loss: loss, configuration: config, metadata: model.metadata)
        out.pointee = retainHandle(TrainerHandle(trainer))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_step")
public func flowrt_trainer_step(_ handle: OpaquePointer?, _ loss: UnsafeMutablePointer<Double>?) -> flowrt_status {
    guarded("flowrt_trainer_step") {
        let h = try object(handle, TrainerHandle.self, "trainer")
        // Computed before the store: `loss?.pointee = try …` would skip the
        // step when loss is NULL.
        let g = try h.pathOptimizer.map { try $0.step().networkLoss.quadratic } ?? h.trainer.step().quadratic
        loss?.pointee = g
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_fit")
public func flowrt_trainer_fit(_ handle: OpaquePointer?, _ steps: UInt64, _ progress: flowrt_progress_fn?,
                               _ userData: UnsafeMutableRawPointer?) -> flowrt_status {
    guarded("flowrt_trainer_fit") {
        let h = try object(handle, TrainerHandle.self, "trainer")
        let trainer = h.trainer
        guard steps < 1 << 62 else { throw FlowError.invalidArgument("steps = \(steps) is too large") }
        if let optimizer = h.pathOptimizer {
            var done: UInt64 = 0
            try optimizer.fit(steps: Int(steps)) { r in
                done += 1
                return progress.map { $0(userData, done, steps, r.networkLoss.quadratic) == 0 } ?? true
            }
            return FLOWRT_OK
        }
        let start = trainer.stepCount
        if let progress {
            try trainer.fit(steps: Int(steps)) { p in
                progress(userData, UInt64(p.step - start), steps, p.trainLoss.quadratic) == 0
            }
        } else {
            try trainer.fit(steps: Int(steps))
        }
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_model")
public func flowrt_trainer_model(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> flowrt_status {
    guarded("flowrt_trainer_model") {
        let out = try require(out, "out")
        out.pointee = nil
        out.pointee = retainHandle(ModelHandle(try trainerObject(handle).model()))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_loss")
public func flowrt_trainer_loss(_ handle: OpaquePointer?, _ trainLoss: UnsafeMutablePointer<Double>?,
                                _ heldOutLoss: UnsafeMutablePointer<Double>?,
                                _ trainRegression: UnsafeMutablePointer<Double>?,
                                _ heldOutRegression: UnsafeMutablePointer<Double>?) -> flowrt_status {
    guarded("flowrt_trainer_loss") {
        let t = try trainerObject(handle)
        if t.stepCount > 0 { try t.updateHeldOutLoss() }
        trainLoss?.pointee = t.lastLoss?.quadratic ?? .nan
        trainRegression?.pointee = t.lastLoss?.regression ?? .nan
        heldOutLoss?.pointee = t.lastHeldOutLoss?.quadratic ?? .nan
        heldOutRegression?.pointee = t.lastHeldOutLoss?.regression ?? .nan
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_step_count")
public func flowrt_trainer_step_count(_ handle: OpaquePointer?) -> UInt64 {
    (try? UInt64(trainerObject(handle).stepCount)) ?? 0
}

@_cdecl("flowrt_trainer_save_checkpoint")
public func flowrt_trainer_save_checkpoint(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> flowrt_status {
    guarded("flowrt_trainer_save_checkpoint") {
        let h = try object(handle, TrainerHandle.self, "trainer")
        try h.refusePathLength("flowrt_trainer_save_checkpoint", "a checkpoint does not hold the schedule's optimiser state")
        let t = h.trainer
        try t.saveCheckpoint(to: String(cString: try require(path, "path")))
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_load_checkpoint")
public func flowrt_trainer_load_checkpoint(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> flowrt_status {
    guarded("flowrt_trainer_load_checkpoint") {
        let h = try object(handle, TrainerHandle.self, "trainer")
        try h.refusePathLength("flowrt_trainer_load_checkpoint", "a checkpoint does not hold the schedule's optimiser state")
        let t = h.trainer
        let file = String(cString: try require(path, "path"))
        try namingFile(file) { try t.loadCheckpoint(from: file) }
        return FLOWRT_OK
    }
}

@_cdecl("flowrt_trainer_free")
public func flowrt_trainer_free(_ handle: OpaquePointer?) {
    releaseHandle(handle, TrainerHandle.self)
}
