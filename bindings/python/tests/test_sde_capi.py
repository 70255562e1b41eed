"""C ABI of the score, the SDE sampler and host densities (section
"densities and SDE" of flowrt.h), called through ctypes against independent
numpy computations."""
import ctypes
from ctypes import POINTER, Structure, c_double, c_float, c_int, c_int32, c_size_t, c_uint32, c_uint64, c_void_p

import numpy as np
import pytest

import flowrt
from flowrt import _capi

lib = _capi.lib
fp = POINTER(c_float)
dp = POINTER(c_double)

# typedef int (*flowrt_density_sample_fn)(void *, uint64_t seed, uint64_t first_index, size_t n, size_t dim, float *out);
sample_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, c_size_t, c_size_t, fp)
# typedef int (*flowrt_density_log_prob_fn)(void *, size_t n, size_t dim, const float *x, double *out);
log_prob_fn = ctypes.CFUNCTYPE(c_int, c_void_p, c_size_t, c_size_t, fp, dp)
# typedef double (*flowrt_diffusion_fn)(void *user_data, double t);
diffusion_fn = ctypes.CFUNCTYPE(c_double, c_void_p, c_double)


class sde_params(Structure):
    """typedef struct flowrt_sde_params { ... } flowrt_sde_params;"""
    _fields_ = [("struct_size", c_uint32), ("method", c_int32), ("steps", c_uint32), ("epsilon", c_double),
                ("taper", c_double), ("diffusion", diffusion_fn), ("diffusion_user_data", c_void_p),
                ("threads", c_uint32)]


def declare(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


flow_score = declare("flowrt_flow_score", c_int, c_void_p, c_size_t, dp, fp, fp)
sde_default = declare("flowrt_sde_default_params", sde_params)
sample_sde = declare("flowrt_flow_sample_sde", c_int, c_void_p, POINTER(sde_params), c_uint64, c_uint64, c_size_t, fp)
density_create_callbacks = declare("flowrt_density_create_callbacks", c_int, c_size_t, sample_fn, log_prob_fn,
                                   c_void_p, POINTER(c_void_p))
density_create_diag = declare("flowrt_density_create_diagonal_normal", c_int, c_size_t, dp, dp, POINTER(c_void_p))
density_create_empirical = declare("flowrt_density_create_empirical", c_int, c_size_t, c_size_t, fp, POINTER(c_void_p))
density_free = declare("flowrt_density_free", None, c_void_p)
density_dim = declare("flowrt_density_dim", c_size_t, c_void_p)
density_has_log_prob = declare("flowrt_density_has_log_prob", c_int, c_void_p)
density_sample = declare("flowrt_density_sample", c_int, c_void_p, c_uint64, c_uint64, c_size_t, fp)
density_log_prob = declare("flowrt_density_log_prob", c_int, c_void_p, c_size_t, fp, dp)
flow_create_with_base = declare("flowrt_flow_create_with_base", c_int, c_void_p, POINTER(_capi.flowrt_flow_params),
                                c_void_p, POINTER(c_void_p))


def f32(a):
    return a.ctypes.data_as(fp)


def f64(a):
    return a.ctypes.data_as(dp)


@pytest.fixture(scope="module")
def flow():
    return flowrt.Flow.mlp(2, hidden=32, depth=2, seed=3)


def test_score_matches_trig_closed_form(flow):
    """Trig schedule, N(0, I) base: s = −x + (2/π) tan(πt/2) v, with v from
    the model's own velocity call."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 2)).astype(np.float32)
    t = np.linspace(0.0, 0.95, 16)
    s = np.empty_like(x)
    assert flow_score(flow._handle, 16, f64(t), f32(x), f32(s)) == 0
    v = flow.velocity(t, x).astype(np.float64)
    expected = -x + (2 / np.pi) * np.tan(np.pi * t / 2)[:, None] * v
    np.testing.assert_allclose(s, expected, rtol=1e-4, atol=1e-5)


def test_score_refuses_singular_time(flow):
    x = np.zeros((1, 2), np.float32)
    s = np.empty_like(x)
    t = np.array([1.0])
    assert flow_score(flow._handle, 1, f64(t), f32(x), f32(s)) == _capi.INVALID_ARGUMENT
    assert b"singular" in _capi.flowrt_last_error_message()
    assert flow_score(None, 1, f64(t), f32(x), f32(s)) == _capi.INVALID_ARGUMENT


def sde(flow, n, seed, first=0, **fields):
    p = sde_default()
    p.steps = 20
    for k, v in fields.items():
        setattr(p, k, v)
    x = np.empty((n, 2), np.float32)
    status = sample_sde(flow._handle, ctypes.byref(p), seed, first, n, f32(x))
    return status, x


def test_sde_reproducible_across_splits_and_threads(flow):
    st, whole = sde(flow, 10, 5, threads=1)
    assert st == 0 and np.isfinite(whole).all()
    _, a = sde(flow, 4, 5, 0, threads=2)
    _, b = sde(flow, 6, 5, 4, threads=2)
    np.testing.assert_array_equal(np.vstack([a, b]), whole)
    _, other = sde(flow, 10, 6)
    assert not np.array_equal(other, whole)


def test_sde_diffusion_callback_and_zero_noise_ode(flow):
    """ε(t) ≡ 0 from a host callback equals epsilon = 0, and both equal a
    fixed-step Heun solve of the ODE from the same base points (float32
    rounding)."""
    zero = diffusion_fn(lambda _, t: 0.0)
    _, a = sde(flow, 8, 2, diffusion=zero)
    _, b = sde(flow, 8, 2, epsilon=0.0)
    np.testing.assert_array_equal(a, b)
    ode = flow.sample(8, seed=2, method="heun", steps=20)
    np.testing.assert_allclose(a, ode, atol=1e-4)
    _, noisy = sde(flow, 8, 2, epsilon=1.0)
    assert np.abs(noisy - a).max() > 1e-2
    bad = diffusion_fn(lambda _, t: -1.0)
    st, _ = sde(flow, 2, 0, diffusion=bad)
    assert st == _capi.INVALID_ARGUMENT
    st, _ = sde(flow, 2, 0, method=7)
    assert st == _capi.INVALID_ARGUMENT


MU = np.array([0.5, -1.0])
SD = np.array([1.5, 0.7])


def numpy_log_prob(x):
    z = (x.astype(np.float64) - MU) / SD
    return -0.5 * (z ** 2).sum(1) - np.log(SD).sum() - np.log(2 * np.pi)


def host_row(seed, index):
    return (MU + SD * np.random.default_rng([seed, index]).standard_normal(2)).astype(np.float32)


@pytest.fixture(scope="module")
def host_density():
    calls = {"fail": False}

    def sample(_, seed, first, n, dim, out):
        if calls["fail"]:
            return 1
        rows = np.ctypeslib.as_array(out, shape=(n, dim))
        for i in range(n):
            rows[i] = host_row(seed, first + i)
        return 0

    def log_prob(_, n, dim, x, out):
        xs = np.ctypeslib.as_array(x, shape=(n, dim))
        np.ctypeslib.as_array(out, shape=(n,))[:] = numpy_log_prob(xs)
        return 0

    keep = (sample_fn(sample), log_prob_fn(log_prob))
    h = c_void_p()
    assert density_create_callbacks(2, keep[0], keep[1], None, ctypes.byref(h)) == 0
    yield h, keep, calls
    density_free(h)


def test_host_density_sample_and_log_prob(host_density):
    h, _, calls = host_density
    assert density_dim(h) == 2 and density_has_log_prob(h) == 1
    x = np.empty((5, 2), np.float32)
    assert density_sample(h, 9, 3, 5, f32(x)) == 0
    np.testing.assert_array_equal(x, np.stack([host_row(9, 3 + i) for i in range(5)]))
    lp = np.empty(5)
    assert density_log_prob(h, 5, f32(x), f64(lp)) == 0
    np.testing.assert_allclose(lp, numpy_log_prob(x), rtol=1e-12)
    calls["fail"] = True
    try:
        assert density_sample(h, 9, 3, 5, f32(x)) == _capi.NON_FINITE
    finally:
        calls["fail"] = False


def test_flow_with_host_base_samples_and_scores(flow, host_density):
    """A flow whose base is the host density: sampling with log-densities
    and the separate backward likelihood agree (both use the host's
    log-density at the base end), and t = 0 gives the base's log-density."""
    h, _, _ = host_density
    p = _capi.flowrt_flow_default_params()
    out = c_void_p()
    assert flow_create_with_base(flow.model._handle, ctypes.byref(p), h, ctypes.byref(out)) == 0
    try:
        sp = _capi.flowrt_solver_default_params()
        sp.rtol = sp.atol = 1e-7
        x = np.empty((32, 2), np.float32)
        lp = np.empty(32)
        assert _capi.flowrt_flow_sample(out, 32, 4, ctypes.byref(sp), f32(x), f64(lp), None) == 0
        # Base points are the host's own samples (transport of x0 = host_row(4, i)).
        z = np.empty_like(x)
        assert _capi.flowrt_flow_encode(out, 32, f32(x), ctypes.byref(sp), f32(z), None) == 0
        np.testing.assert_allclose(z, np.stack([host_row(4, i) for i in range(32)]), atol=1e-3)
        back = np.empty(32)
        assert _capi.flowrt_flow_log_prob(out, 32, f32(x), 1.0, ctypes.byref(sp), f64(back), None, None) == 0
        np.testing.assert_allclose(back, lp, atol=1e-4)
        at0 = np.empty(32)
        assert _capi.flowrt_flow_log_prob(out, 32, f32(x), 0.0, ctypes.byref(sp), f64(at0), None, None) == 0
        np.testing.assert_allclose(at0, numpy_log_prob(x), rtol=1e-9)
        # The score needs a Gaussian base the library knows.
        s = np.empty_like(x)
        t = np.full(32, 0.5)
        assert flow_score(out, 32, f64(t), f32(x), f32(s)) == _capi.UNSUPPORTED
    finally:
        _capi.flowrt_flow_free(out)


def test_diagonal_normal_and_empirical_densities(flow):
    h = c_void_p()
    assert density_create_diag(2, f64(MU), f64(SD), ctypes.byref(h)) == 0
    try:
        x = np.random.default_rng(0).standard_normal((7, 2)).astype(np.float32)
        lp = np.empty(7)
        assert density_log_prob(h, 7, f32(x), f64(lp)) == 0
        np.testing.assert_allclose(lp, numpy_log_prob(x), rtol=1e-12)
        # A flow over a diagonal normal has a score: t = 0 gives the base's
        # own score −(x − μ)/σ² (β = 0).
        p = _capi.flowrt_flow_default_params()
        out = c_void_p()
        assert flow_create_with_base(flow.model._handle, ctypes.byref(p), h, ctypes.byref(out)) == 0
        s = np.empty_like(x)
        assert flow_score(out, 7, f64(np.zeros(7)), f32(x), f32(s)) == 0
        np.testing.assert_allclose(s, -(x - MU) / SD ** 2, rtol=1e-5, atol=1e-6)
        _capi.flowrt_flow_free(out)
    finally:
        density_free(h)
    pts = np.random.default_rng(1).standard_normal((20, 2)).astype(np.float32)
    e = c_void_p()
    assert density_create_empirical(20, 2, f32(pts), ctypes.byref(e)) == 0
    try:
        assert density_has_log_prob(e) == 0
        y = np.empty((50, 2), np.float32)
        assert density_sample(e, 1, 0, 50, f32(y)) == 0
        assert all(any(np.array_equal(r, q) for q in pts) for r in y)
        assert density_log_prob(e, 50, f32(y), f64(np.empty(50))) == _capi.UNSUPPORTED
        out = c_void_p()
        p = _capi.flowrt_flow_default_params()
        assert flow_create_with_base(flow.model._handle, ctypes.byref(p), e, ctypes.byref(out)) == _capi.UNSUPPORTED
    finally:
        density_free(e)
    assert density_create_diag(2, None, f64(np.array([1.0, -1.0])), ctypes.byref(h)) == _capi.INVALID_ARGUMENT
