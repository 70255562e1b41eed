"""Run flowrt on a Dask cluster: row blocks of a dask array are scored or
sampled on the workers, each of which loads the ONNX flow file once.

Results equal the single-process calls: log-densities are per row, and sample
i depends only on (seed, i) whatever the chunking. Conditional flows take
`context=`: rows chunked with the points (or one context for all samples).
"""
from __future__ import annotations

import functools
import os

import numpy as np


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float):
    from . import load
    return load(path)


def _flow(path: str):
    return _load(os.path.abspath(path), os.path.getmtime(path))


def _log_prob_block(block, path, t, solver):
    return _flow(path).log_prob(block, t=t, **solver)


def _log_prob_block_conditional(block, context, path, t, solver):
    return _flow(path).log_prob(block, t=t, context=context, **solver)


def _rows_like(context, chunks):
    """The dask array `context` [n, m] (or [n] labels) chunked by the rows
    `chunks` of the points, one chunk along columns."""
    import dask.array as da
    C = da.asarray(context)
    if C.ndim == 1:
        C = C[:, None]
    if C.ndim != 2:
        raise ValueError(f"context must be [n, m], got {C.shape}")
    return C.rechunk((chunks, -1))


def log_prob(flow_path, X, t: float = 1.0, context=None, **solver):
    """log ρ_t of every row of the dask array X [n, dim] (one chunk along
    columns); returns a float64 dask array [n]. A conditional flow needs
    `context` [n, m] (any array; chunked with X's rows). Solver keywords as
    Flow.log_prob."""
    import dask.array as da
    X = da.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be [n, dim], got {X.shape}")
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    if context is None:
        return X.map_blocks(_log_prob_block, str(flow_path), float(t), solver, drop_axis=1, dtype=np.float64)
    C = _rows_like(context, X.chunks[0])
    if C.shape[0] != X.shape[0]:
        raise ValueError(f"context has {C.shape[0]} rows, X {X.shape[0]}")
    return da.map_blocks(_log_prob_block_conditional, X, C, str(flow_path), float(t), solver, drop_axis=1,
                         dtype=np.float64)


def _sample_block(block_info=None, path=None, seed=0, solver=None, context=None):
    start, stop = block_info[None]["array-location"][0]
    return _flow(path).sample(stop - start, seed=seed, first_index=start, context=context, **(solver or {}))


def _sample_block_conditional(context, block_info=None, path=None, seed=0, solver=None):
    start, stop = block_info[None]["array-location"][0]
    return _flow(path).sample(stop - start, seed=seed, first_index=start, context=context, **(solver or {}))


def sample(flow_path, n: int, chunks: int = 100_000, seed: int = 0, context=None, **solver):
    """n samples as a float32 dask array [n, dim], chunked by rows; equal to
    `flowrt.load(flow_path).sample(n, seed, context=context)`. A conditional
    flow needs `context`: one context [m] for all samples, or [n, m] rows
    (chunked with the samples)."""
    import dask.array as da
    flow = _flow(str(flow_path))
    dim, m = flow.dim, flow.context_dim
    row_chunks = da.core.normalize_chunks(chunks, (n,))[0]
    # .size first: np.size on a dask array warns (a fallback dask may drop).
    size = None if context is None else (context.size if hasattr(context, "size") else np.size(context))
    if context is not None and m > 0 and size != m:
        C = _rows_like(context, row_chunks)
        if C.shape[0] != n:
            raise ValueError(f"context has {C.shape[0]} rows; give n = {n} rows or one context [{m}]")
        return C.map_blocks(_sample_block_conditional, path=str(flow_path), seed=int(seed), solver=solver,
                            chunks=(row_chunks, (dim,)), dtype=np.float32)
    return da.map_blocks(_sample_block, path=str(flow_path), seed=int(seed), solver=solver,
                         context=None if context is None else np.asarray(context, np.float32),
                         chunks=(row_chunks, (dim,)), dtype=np.float32)
