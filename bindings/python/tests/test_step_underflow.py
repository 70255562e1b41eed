"""A step-size underflow is reported as such (issue 16): StepUnderflow
(status 11, a SolverIncomplete) with the time and step in the message, not
"raise max_steps". The field dx/dt = x² + 1 (Tests/SolverData/blow_up.onnx,
made by make_blow_up.py) blows up at t* = π/2 − atan x0."""
import math
import re
from pathlib import Path

import numpy as np
import pytest

import flowrt
from flowrt import _capi

BLOW_UP = Path(__file__).resolve().parents[3] / "Tests" / "SolverData" / "blow_up.onnx"


def test_transport_into_a_blow_up_raises_step_underflow():
    flow = flowrt.load(BLOW_UP)
    x0 = np.array([[0.0], [1.0], [2.0]], np.float32)
    for max_steps in (10_000, 1_000_000):
        with pytest.raises(flowrt.StepUnderflow) as info:
            flow.transport(x0, 0.0, 1.0, rtol=1e-6, atol=1e-6, max_steps=max_steps)
        err = info.value
        assert isinstance(err, flowrt.SolverIncomplete) and err.status == _capi.STEP_UNDERFLOW == 11
        message = str(err)
        assert "2 of 3 samples" in message and "raise max_steps" not in message
        found = re.search(r"first: sample (\d+) at t = ([0-9.e-]+) with step ([0-9.e+-]+)", message)
        assert found, message
        assert int(found.group(1)) == 1
        assert float(found.group(2)) == pytest.approx(math.pi / 2 - math.atan(1.0), abs=1e-6)
        assert 0 < abs(float(found.group(3))) <= 1e-14
    # Short of the blow-up the same samples finish: x(t) = tan(t + atan x0).
    np.testing.assert_allclose(flow.transport(x0, 0.0, 0.4, rtol=1e-8, atol=1e-8)[:, 0],
                               np.tan(0.4 + np.arctan(x0[:, 0])), rtol=1e-5)


def test_log_prob_backward_into_a_blow_up():
    flow = flowrt.load(BLOW_UP)
    with pytest.raises(flowrt.StepUnderflow, match=r"sample 0 at t = 0\.536"):
        flow.log_prob(np.array([[-2.0], [0.5]], np.float32))


def test_max_steps_is_still_max_steps():
    flow = flowrt.load(BLOW_UP)
    with pytest.raises(flowrt.SolverIncomplete) as info:
        flow.transport(np.array([[0.0]], np.float32), 0.0, 1.0, rtol=1e-9, atol=1e-9, max_steps=3)
    assert not isinstance(info.value, flowrt.StepUnderflow) and "raise max_steps" in str(info.value)
