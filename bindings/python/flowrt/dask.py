"""Run flowrt on a Dask cluster: row blocks of a dask array are scored or
sampled on the workers, each of which loads the ONNX flow file once.

Results equal the single-process calls: log-densities are per row, and sample
i depends only on (seed, i) whatever the chunking.
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


def log_prob(flow_path, X, t: float = 1.0, **solver):
    """log ρ_t of every row of the dask array X [n, dim] (one chunk along
    columns); returns a float64 dask array [n]. Solver keywords as Flow.log_prob."""
    import dask.array as da
    X = da.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be [n, dim], got {X.shape}")
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    return X.map_blocks(_log_prob_block, str(flow_path), float(t), solver, drop_axis=1, dtype=np.float64)


def _sample_block(block_info=None, path=None, seed=0, solver=None):
    start, stop = block_info[None]["array-location"][0]
    return _flow(path).sample(stop - start, seed=seed, first_index=start, **(solver or {}))


def sample(flow_path, n: int, chunks: int = 100_000, seed: int = 0, **solver):
    """n samples as a float32 dask array [n, dim], chunked by rows; equal to
    `flowrt.load(flow_path).sample(n, seed)`."""
    import dask.array as da
    dim = _flow(str(flow_path)).dim
    return da.map_blocks(_sample_block, path=str(flow_path), seed=int(seed), solver=solver,
                         chunks=(da.core.normalize_chunks(chunks, (n,))[0], (dim,)), dtype=np.float32)
