"""Exception classes: one per status, all FlowErrors; Unsupported is its own
class, not an ONNXError (issue 16, item 4)."""
import flowrt
from flowrt import _capi, _errors


def test_every_status_has_its_own_flow_error():
    seen = set()
    for status, cls in _errors._BY_STATUS.items():
        assert issubclass(cls, flowrt.FlowError) and cls.status == status
        assert cls not in seen
        seen.add(cls)
    assert sorted(_errors._BY_STATUS) == list(range(1, 12))
    # The C library has a text for every one of them.
    for status in _errors._BY_STATUS:
        assert _capi.flowrt_status_string(status).decode() != "unknown status", status
    assert _capi.flowrt_status_string(12).decode() == "unknown status"


def test_unsupported_is_not_an_onnx_error():
    assert not issubclass(flowrt.Unsupported, flowrt.ONNXError)
    assert not issubclass(flowrt.ONNXError, flowrt.Unsupported)
    assert _capi.flowrt_status_string(5).decode() and _capi.flowrt_status_string(4).decode()
