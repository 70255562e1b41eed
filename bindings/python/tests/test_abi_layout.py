"""The ctypes structs match the C header's layout: every params struct's
size equals the struct_size the library's *_default_params() reports (a
mismatch would make by-value returns write past the Python buffer)."""
import ctypes

import flowrt
from flowrt import _capi


def test_struct_sizes_match_the_library():
    for name, struct in [("flowrt_mlp_default_params", _capi.flowrt_mlp_params),
                         ("flowrt_flow_default_params", _capi.flowrt_flow_params),
                         ("flowrt_solver_default_params", _capi.flowrt_solver_params),
                         ("flowrt_trainer_default_params", _capi.flowrt_trainer_params),
                         ("flowrt_onnx_default_options", _capi.flowrt_onnx_options),
                         ("flowrt_sde_default_params", _capi.flowrt_sde_params),
                         ("flowrt_path_default_params", _capi.flowrt_path_params)]:
        got = getattr(_capi, name)()
        assert got.struct_size == ctypes.sizeof(struct), (name, got.struct_size, ctypes.sizeof(struct))
