// Interpolant schedules from params structs: the built-in codes and the
// host's flowrt_schedule_fn (FLOWRT_INTERPOLANT_CUSTOM), shared by trainers
// and flows.
import CFlowRT
import FlowRuntime

/// The host's schedule callback and user data (the host promises that the
/// function is pure in t and thread-safe; see flowrt_schedule_fn).
private struct HostSchedule: @unchecked Sendable {
    let function: flowrt_schedule_fn
    let userData: UnsafeMutableRawPointer?

    /// (α, β, α', β') at t: NaN in every slot the callback leaves unwritten,
    /// and all NaN when it returns non-zero (how FlowRuntime learns of a
    /// failure: the operation then reports `.nonFinite` naming t).
    func coefficients(at t: Double) -> InterpolantCoefficients {
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 4) { c in
            c.initialize(repeating: .nan)
            guard function(userData, t, c.baseAddress) == 0 else {
                return InterpolantCoefficients(alpha: .nan, beta: .nan, alphaDot: .nan, betaDot: .nan)
            }
            return InterpolantCoefficients(alpha: c[0], beta: c[1], alphaDot: c[2], betaDot: c[3])
        }
    }
}

/// The schedule a params struct asks for: a built-in one, or for
/// FLOWRT_INTERPOLANT_CUSTOM the host's `schedule_fn`, validated here
/// (boundary conditions, finite on a grid: `Schedule.validate()`).
/// - Throws: `.invalidArgument` for an unknown code, CUSTOM without a
///   function, a function with another code, or a boundary violation;
///   `.nonFinite` when the function fails on the validation grid.
func interpolantSchedule(_ code: Int32, function: flowrt_schedule_fn?,
                         userData: UnsafeMutableRawPointer?) throws -> any Schedule {
    let schedule: any Schedule
    switch UInt32(bitPattern: code) {
    case FLOWRT_INTERPOLANT_TRIG.rawValue: schedule = TrigSchedule()
    case FLOWRT_INTERPOLANT_LINEAR.rawValue: schedule = LinearSchedule()
    case FLOWRT_INTERPOLANT_CUSTOM.rawValue:
        guard let function else {
            throw FlowError.invalidArgument("params->interpolant = FLOWRT_INTERPOLANT_CUSTOM needs params->schedule_fn, which is NULL")
        }
        let host = HostSchedule(function: function, userData: userData)
        let custom = CallbackSchedule(name: Flow.customInterpolant) { host.coefficients(at: $0) }
        do {
            try custom.validate()
        } catch let FlowError.invalidArgument(m) {
            throw FlowError.invalidArgument("params->schedule_fn: \(m)")
        } catch let FlowError.nonFinite(m) {
            throw FlowError.nonFinite("params->schedule_fn: \(m)")
        }
        return custom
    default: throw FlowError.invalidArgument("params->interpolant = \(code) is not a flowrt_interpolant")
    }
    guard function == nil else {
        throw FlowError.invalidArgument(
            "params->schedule_fn is set but params->interpolant = \(code) (\(schedule.name)) ignores it: set interpolant = FLOWRT_INTERPOLANT_CUSTOM to use the callback, or schedule_fn = NULL")
    }
    return schedule
}

/// sizeof(flowrt_flow_params) before `schedule_fn` was appended (the end of
/// `base`: 12, less than the new field's offset, 16, because the old struct
/// had 4-byte alignment): the smallest struct_size accepted.
let flowParamsFirstSize = MemoryLayout<flowrt_flow_params>.offset(of: \flowrt_flow_params.base)! + MemoryLayout<Int32>.size

/// sizeof(flowrt_trainer_params) before `schedule_fn` was appended (the end
/// of `time_beta_b`): the smallest struct_size accepted.
let trainerParamsFirstSize = MemoryLayout<flowrt_trainer_params>.offset(of: \flowrt_trainer_params.time_beta_b)!
    + MemoryLayout<Double>.size

/// The sizes flowrt_trainer_params had before this one: 0.1's first version
/// (before `schedule_fn`), 0.1's last (before 0.2's `label_dropout`) and
/// 0.2's (before `coupling`).
let trainerParamsSizes = [trainerParamsFirstSize,
                          MemoryLayout<flowrt_trainer_params>.offset(of: \flowrt_trainer_params.label_dropout)!,
                          MemoryLayout<flowrt_trainer_params>.offset(of: \flowrt_trainer_params.coupling)!]

/// Fails, with the C calls that fix it, when `flow` was loaded from a file
/// recording a "custom" schedule (which the file cannot hold) and `what`
/// needs the schedule. Other flows pass (FlowRuntime reports the rest).
/// - Throws: `.unsupported`.
func requireRebuiltSchedule(_ flow: Flow, for what: String) throws {
    guard flow.schedule == nil, flow.interpolantName == Flow.customInterpolant else { return }
    throw FlowError.unsupported(
        "\(what) needs the interpolant schedule, and this flow was loaded from a file that records a custom (host) schedule, which a file cannot hold: load the model with flowrt_model_load_onnx and create the flow with flowrt_flow_create, interpolant = FLOWRT_INTERPOLANT_CUSTOM and the same schedule_fn")
}
