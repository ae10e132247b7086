"""Compiled CPU kernels (numba) for the synth's sequential recursions.

The ladder filter's all-pole sections and its block scan are recursions over time:
in PyTorch each time step is a few small ops, so a 128-sample block costs hundreds of
op dispatches whatever the batch. Here each recursion is one compiled loop (time
outer, rows inner and contiguous, so the inner loop vectorizes), with the same
arithmetic in the same order as torchaudio's ``lfilter`` loop (products rounded, then
differences; no fused multiply-adds), so the forward equals it bit for bit (the
PyTorch step loop uses fused multiply-adds: equal up to rounding).

The wavetable bank's backward is one compiled loop too (:func:`bank_adjoint`): each
read's position recomputed with the forward's float ops, its two table entries'
gradients accumulated in place (PyTorch needs index and weight tensors and two
``scatter_add_`` per oscillator). It releases the GIL and splits whole voices over
``torch.get_num_threads()`` threads (B = 256 at 2 threads: 30 vs 42 ms), so its numbers
do not depend on the thread count. The bank's forward is one loop too, on the calling
thread, with PyTorch's exact values.

numba is imported on first use (it is a dependency of librosa, hence of aegym, but
costs ~0.5 s to import). The kernels run when :func:`enabled` says so: on CPU tensors,
with numba importable, and unless switched off by ``AEGYM_COMPILED_KERNELS=0`` or
:func:`compiled_kernels` (the benchmarks use it to time both paths in one process).
CUDA tensors always take the PyTorch path (its parallel form runs on the GPU).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

_state = {"on": os.environ.get("AEGYM_COMPILED_KERNELS", "1") != "0"}


@functools.cache
def _numba() -> Any:
    """The numba module, or ``None`` when it cannot be imported."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba comes with librosa
        return None
    return numba


def enabled(x: torch.Tensor) -> bool:
    """Whether the compiled kernels run for tensors like ``x`` (CPU, numba, switched on)."""
    return _state["on"] and x.device.type == "cpu" and _numba() is not None


@contextlib.contextmanager
def compiled_kernels(on: bool) -> Iterator[None]:
    """Switch the compiled kernels on or off inside the block (the PyTorch loops run
    when off); for benchmarks and tests comparing the two paths."""
    before = _state["on"]
    _state["on"] = bool(on)
    try:
        yield
    finally:
        _state["on"] = before


def _allpole_forward_py(x, a1, a2, h1, h2, y):  # pragma: no cover - compiled
    """``y[n] = (x[n] - a2 y[n-2]) - a1 y[n-1]`` over ``x [N, R]``, ``y[-1] = h1``,
    ``y[-2] = h2`` (``a1, a2, h1, h2 [R]``), written into ``y``; the first sample takes
    the history in the order of lfilter's input corrections (a1 term first)."""
    n, r = x.shape
    for j in range(r):
        y[0, j] = (x[0, j] - a1[j] * h1[j]) - a2[j] * h2[j]
    if n > 1:
        for j in range(r):
            y[1, j] = (x[1, j] - a2[j] * h1[j]) - a1[j] * y[0, j]
    for i in range(2, n):
        for j in range(r):
            y[i, j] = (x[i, j] - a2[j] * y[i - 2, j]) - a1[j] * y[i - 1, j]


def _zero_state_ends_py(x, a1, a2, b1, b2, ends):  # pragma: no cover - compiled
    """Two all-pole sections in cascade from rest, ``v = allpole(x; a)``,
    ``y = allpole(v; b)`` over ``x [N, R]``, keeping only their last two outputs:
    ``ends [4, R]`` = ``(v[N-1], v[N-2], y[N-1], y[N-2])`` (zero before the block). The
    same arithmetic as :func:`_allpole_forward_py` twice, without the ``[N, R]`` outputs."""
    n, r = x.shape
    for j in range(r):
        ends[0, j] = 0.0
        ends[1, j] = 0.0
        ends[2, j] = 0.0
        ends[3, j] = 0.0
    for i in range(n):
        for j in range(r):
            v = (x[i, j] - a2[j] * ends[1, j]) - a1[j] * ends[0, j]
            ends[1, j] = ends[0, j]
            ends[0, j] = v
            y = (v - b2[j] * ends[3, j]) - b1[j] * ends[2, j]
            ends[3, j] = ends[2, j]
            ends[2, j] = y


def _cascade_forward_py(x, a1, a2, b1, b2, hist, y):  # pragma: no cover - compiled
    """Two all-pole sections in cascade, ``v = allpole(x; a, hist[0:2])``,
    ``y = allpole(v; b, hist[2:4])``, into ``y [N, R]``: :func:`_allpole_forward_py`
    twice with the same arithmetic, ``v`` kept per row instead of as an ``[N, R]``
    buffer (``v1``/``v2`` hold ``v[i-1]``/``v[i-2]``)."""
    n, r = x.shape
    v1 = np.empty(r, x.dtype)
    v2 = np.empty(r, x.dtype)
    for j in range(r):
        v = (x[0, j] - a1[j] * hist[0, j]) - a2[j] * hist[1, j]
        y[0, j] = (v - b1[j] * hist[2, j]) - b2[j] * hist[3, j]
        v2[j] = hist[0, j]
        v1[j] = v
    if n > 1:
        for j in range(r):
            v = (x[1, j] - a2[j] * v2[j]) - a1[j] * v1[j]
            y[1, j] = (v - b2[j] * hist[2, j]) - b1[j] * y[0, j]
            v2[j] = v1[j]
            v1[j] = v
    for i in range(2, n):
        for j in range(r):
            v = (x[i, j] - a2[j] * v2[j]) - a1[j] * v1[j]
            y[i, j] = (v - b2[j] * y[i - 2, j]) - b1[j] * y[i - 1, j]
            v2[j] = v1[j]
            v1[j] = v


def _allpole_adjoint_py(grad, has_grad, tail, a1, a2, y, lam, acc1, acc2):  # pragma: no cover
    """Adjoint of :func:`_allpole_forward_py`: ``λ[m] = (g[m] - a2 λ[m+2]) - a1 λ[m+1]``
    backwards from ``λ[N] = λ[N+1] = 0``, where ``g`` is ``grad`` (zero unless
    ``has_grad``) plus ``tail [2, R]`` at samples ``N-1``, ``N-2``. ``lam [N+2, R]``
    gets ``λ`` in its first N rows (the last two must be zero on entry). Also
    accumulates (float64) ``acc1 = Σ_{m>=1} λ[m] y[m-1]``, ``acc2 = Σ_{m>=2} λ[m] y[m-2]``,
    the coefficient gradients' sums. The rows without the tail, ``N-3 .. 2``, run as one
    fused pass per row (λ and both sums), which the compiler vectorizes; the (at most
    four) edge rows take the general path."""
    n, r = y.shape
    for m in range(n - 1, max(n - 3, -1), -1):  # the tail enters here
        for j in range(r):
            src = grad[m, j] + tail[n - 1 - m, j] if has_grad else tail[n - 1 - m, j]
            lam[m, j] = (src - a2[j] * lam[m + 2, j]) - a1[j] * lam[m + 1, j]
        if m >= 1:
            for j in range(r):
                acc1[j] += lam[m, j] * y[m - 1, j]
        if m >= 2:
            for j in range(r):
                acc2[j] += lam[m, j] * y[m - 2, j]
    if has_grad:
        for m in range(n - 3, 1, -1):
            for j in range(r):
                lm = (grad[m, j] - a2[j] * lam[m + 2, j]) - a1[j] * lam[m + 1, j]
                lam[m, j] = lm
                acc1[j] += lm * y[m - 1, j]
                acc2[j] += lm * y[m - 2, j]
    else:
        for m in range(n - 3, 1, -1):
            for j in range(r):
                lm = -(a2[j] * lam[m + 2, j]) - a1[j] * lam[m + 1, j]
                lam[m, j] = lm
                acc1[j] += lm * y[m - 1, j]
                acc2[j] += lm * y[m - 2, j]
    for m in range(min(1, n - 3), -1, -1):  # head rows, no tail
        if has_grad:
            for j in range(r):
                lam[m, j] = (grad[m, j] - a2[j] * lam[m + 2, j]) - a1[j] * lam[m + 1, j]
        else:
            for j in range(r):
                lam[m, j] = -(a2[j] * lam[m + 2, j]) - a1[j] * lam[m + 1, j]
        if m >= 1:
            for j in range(r):
                acc1[j] += lam[m, j] * y[m - 1, j]


def _affine_scan_py(mats, vecs, s0, out):  # pragma: no cover - compiled
    """``s_k = M_k s_{k-1} + e_k`` from ``s_{-1} = s0``: ``mats [K, D, D, B]``,
    ``vecs [K, D, B]``, ``s0 [D, B]``, written into ``out [K, D, B]``."""
    nk, d, _, nb = mats.shape
    for k in range(nk):
        for i in range(d):
            for b in range(nb):
                prev = s0[0, b] if k == 0 else out[k - 1, 0, b]
                acc = mats[k, i, 0, b] * prev
                for j in range(1, d):
                    prev = s0[j, b] if k == 0 else out[k - 1, j, b]
                    acc += mats[k, i, j, b] * prev
                out[k, i, b] = acc + vecs[k, i, b]


def _affine_scan_adjoint_py(mats, s0, out, grad, lam, grad_mats, grad_s0):  # pragma: no cover
    """Adjoint of :func:`_affine_scan_py`: ``λ_k = g_k + M_{k+1}ᵀ λ_{k+1}`` into ``lam``,
    ``dL/dM_k = λ_k s_{k-1}ᵀ`` into ``grad_mats``, ``dL/ds0 = M_0ᵀ λ_0`` into ``grad_s0``."""
    nk, d, _, nb = mats.shape
    for k in range(nk - 1, -1, -1):
        for j in range(d):
            for b in range(nb):
                acc = grad[k, j, b]
                if k + 1 < nk:
                    for i in range(d):
                        acc += mats[k + 1, i, j, b] * lam[k + 1, i, b]
                lam[k, j, b] = acc
        for i in range(d):
            for j in range(d):
                for b in range(nb):
                    prev = s0[j, b] if k == 0 else out[k - 1, j, b]
                    grad_mats[k, i, j, b] = lam[k, i, b] * prev
    for j in range(d):
        for b in range(nb):
            acc = mats[0, 0, j, b] * lam[0, 0, b]
            for i in range(1, d):
                acc += mats[0, i, j, b] * lam[0, i, b]
            grad_s0[j, b] = acc


def _fma_intrinsic(numba: Any) -> Any:
    """``_fma(a, b, c) = a·b + c`` rounded once (LLVM's ``fma``), as a numba intrinsic:
    PyTorch's vectorised ``lerp`` uses fused multiply-adds, which a plain numba
    expression (products rounded, then sums) does not reproduce."""
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def fma(typingctx, a, b, c):  # pragma: no cover - runs inside the compiler
        if not (isinstance(a, numba.types.Float) and a == b and b == c):
            return None

        def codegen(context, builder, signature, args):
            ty = context.get_value_type(signature.return_type)
            name = "llvm.fma.f32" if a.bitwidth == 32 else "llvm.fma.f64"
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ty, [ty, ty, ty]), name
            )
            return builder.call(fn, args)

        return a(a, b, c), codegen

    return fma


def _fma_python(a: Any, b: Any, c: Any) -> Any:  # pragma: no cover - replaced when compiling
    """Placeholder for ``_fma`` until :func:`_kernel` installs the intrinsic."""
    return a * b + c


_fma = _fma_python


def _bank_forward_py(tables, dt, start, n, consts, out, lo, hi):  # pragma: no cover - compiled
    """The wavetable bank (``oscillators._WavetableBank``) for voices ``lo:hi`` into
    ``out [B, K, N]`` (any strides; sample ``k·N + j``): per oscillator the read
    position with the same float ops as the PyTorch path, then ``torch.lerp``'s formula
    (``w (e - a) + a`` for ``|w| < 0.5``, else ``(w - 1)(e - a) + e``, fused), summed
    over oscillators in order — the PyTorch path's values bit for bit (where ATen runs
    its vectorized kernels, i.e. on AVX2/AVX-512 CPUs, whose ``lerp`` fuses; on others
    the two paths agree to rounding).
    ``consts = (L, L - 1, 1)`` in the tables' dtype."""
    n_osc = tables.shape[1]
    nblk, block = out.shape[1], out.shape[2]
    size, top, one = consts[0], consts[1], consts[2]
    for b in range(lo, hi):
        for j in range(block):
            for k in range(nblk):
                m = n[k * block + j]
                acc = consts[0] - consts[0]
                for v in range(n_osc):
                    pos = m * dt[b, v] + start[b, v]
                    pos = (pos - np.floor(pos)) * size
                    index = min(np.floor(pos), top)
                    frac = pos - index
                    i = int(index)
                    lo_val = tables[b, v, i]
                    hi_val = tables[b, v, i + 1]
                    diff = hi_val - lo_val
                    if abs(frac) < 0.5:
                        val = _fma(frac, diff, lo_val)
                    else:
                        val = _fma(frac - one, diff, hi_val)
                    acc = val if v == 0 else acc + val
                out[b, k, j] = acc


def _bank_adjoint_py(  # pragma: no cover - compiled
    tables, dt, start, n, consts, grad, g_tab, g_dt, g_start, lo, hi
):
    """Adjoint of the wavetable bank (``oscillators._WavetableBank``) for voices
    ``lo:hi``: ``grad [B, K, N]`` (any strides; sample ``k·N + j``), ``n`` the sample
    indices as floats, ``consts = (L, L - 1, 1)`` in the tables' dtype. Each read's
    position is recomputed with the forward's float ops in the same order, then
    ``dL/dt[i] += g (1 - frac)``, ``dL/dt[i + 1] += g frac`` into ``g_tab`` (zeros on
    entry) and ``dL/dstart = Σ g (t[i+1] - t[i]) L``, ``dL/ddt = Σ (that) n`` (float64
    sums) into ``g_start``/``g_dt``. Voices are independent: any split of the rows over
    threads gives the same numbers."""
    n_osc = tables.shape[1]
    nblk, block = grad.shape[1], grad.shape[2]
    size, top = consts[0], consts[1]
    for b in range(lo, hi):
        for v in range(n_osc):
            d = dt[b, v]
            s = start[b, v]
            t = tables[b, v]
            gt = g_tab[b, v]
            acc_start = 0.0
            acc_dt = 0.0
            for j in range(block):
                for k in range(nblk):
                    m = n[k * block + j]
                    pos = m * d + s
                    pos = (pos - np.floor(pos)) * size
                    index = min(np.floor(pos), top)
                    frac = pos - index
                    i = int(index)
                    g = grad[b, k, j]
                    g_phase = (t[i + 1] - t[i]) * g * size
                    acc_start += g_phase
                    acc_dt += g_phase * m
                    g_hi = frac * g
                    gt[i] += g - g_hi
                    gt[i + 1] += g_hi
            g_start[b, v] = acc_start
            g_dt[b, v] = acc_dt


@functools.cache
def _kernel(name: str) -> Any:
    """The compiled form of kernel ``name`` (compiled on first use, cached on disk)."""
    numba = _numba()
    if _fma is _fma_python:
        globals()["_fma"] = _fma_intrinsic(numba)
    return numba.njit(cache=True, nogil=True, boundscheck=False)(globals()[f"_{name}_py"])


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def allpole(
    x: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor
) -> torch.Tensor:
    """All-pole biquad ``y[n] = x[n] - a1 y[n-1] - a2 y[n-2]`` along dim 0 of
    ``x [N, R]`` with history ``y[-1] = h1``, ``y[-2] = h2`` (no autograd)."""
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    _kernel("allpole_forward")(_np(x), _np(a1), _np(a2), _np(h1), _np(h2), y.numpy())
    return y


def zero_state_ends(
    x: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """End states ``(v[N-1], v[N-2])``, ``(y[N-1], y[N-2])`` ``[2, R]`` of two all-pole
    sections in cascade from rest over ``x [N, R]`` (no autograd; no full-size output)."""
    ends = torch.empty(4, x.shape[1], dtype=x.dtype)
    _kernel("zero_state_ends")(_np(x), _np(a1), _np(a2), _np(b1), _np(b2), ends.numpy())
    return ends[:2], ends[2:]


def cascade(
    x: torch.Tensor,
    a1: torch.Tensor,
    a2: torch.Tensor,
    b1: torch.Tensor,
    b2: torch.Tensor,
    hist: torch.Tensor,
) -> torch.Tensor:
    """Two all-pole sections in cascade over ``x [N, R]`` with histories ``hist [4, R]``
    = ``(v[-1], v[-2], y[-1], y[-2])`` -> ``y`` (no autograd; the same values as two
    :func:`allpole` calls, without the intermediate ``[N, R]`` buffer)."""
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    _kernel("cascade_forward")(_np(x), _np(a1), _np(a2), _np(b1), _np(b2), _np(hist), y.numpy())
    return y


def allpole_adjoint(
    grad: torch.Tensor | None,
    grad_tail: torch.Tensor | None,
    a1: torch.Tensor,
    a2: torch.Tensor,
    y: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The adjoint recursion of :func:`allpole` -> ``(λ [N, R], Σ λ[m] y[m-1],
    Σ λ[m] y[m-2])`` (the sums over ``m >= 1``, ``m >= 2``, in ``y``'s dtype).
    ``grad=None`` is zero, never materialised; ``grad_tail [2, R]`` is the gradient of
    ``(y[N-1], y[N-2])``."""
    n, rows = y.shape
    lam = y.new_empty(n + 2, rows)
    lam[n:] = 0.0
    tail = torch.zeros(2, rows, dtype=y.dtype) if grad_tail is None else grad_tail
    g = y[:0] if grad is None else grad
    acc1 = np.zeros(rows)
    acc2 = np.zeros(rows)
    _kernel("allpole_adjoint")(
        _np(g), grad is not None, _np(tail), _np(a1), _np(a2), _np(y), lam.numpy(), acc1, acc2
    )
    to = functools.partial(torch.as_tensor, dtype=y.dtype)
    return lam[:n], to(acc1), to(acc2)


def affine_scan(mats: torch.Tensor, vecs: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
    """States ``s_k = M_k s_{k-1} + e_k`` (rows-last, see ``filters._AffineScan``)."""
    out = torch.empty(vecs.shape, dtype=vecs.dtype)
    _kernel("affine_scan")(_np(mats), _np(vecs), _np(s0), out.numpy())
    return out


def affine_scan_adjoint(
    mats: torch.Tensor, s0: torch.Tensor, out: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adjoint of :func:`affine_scan` -> ``(dL/dM, dL/de = λ, dL/ds0)``."""
    lam = torch.empty(grad.shape, dtype=grad.dtype)
    grad_mats = torch.empty(mats.shape, dtype=mats.dtype)
    grad_s0 = torch.empty(s0.shape, dtype=s0.dtype)
    _kernel("affine_scan_adjoint")(
        _np(mats), _np(s0), _np(out), _np(grad), lam.numpy(), grad_mats.numpy(), grad_s0.numpy()
    )
    return grad_mats, lam, grad_s0


# Voices per worker below which the bank adjoint runs on the calling thread only.
_MIN_ROWS_PER_WORKER = 4
_pool: dict[str, Any] = {}


def _workers(n: int) -> Any:
    """A thread pool of ``n`` workers for nogil kernels, recreated after a fork (a
    pool inherited from the parent has no threads)."""
    key = (os.getpid(), n)
    if _pool.get("key") != key:
        old = _pool.get("executor")
        if old is not None and _pool["key"][0] == key[0]:  # thread count changed
            old.shutdown(wait=True)  # idle: its threads exit at once
        _pool["key"] = key
        _pool["executor"] = concurrent.futures.ThreadPoolExecutor(
            n, thread_name_prefix="aegym-kernel"
        )
    return _pool["executor"]


def _split_rows(kernel: Any, rows: int, *args: Any) -> None:
    """Run ``kernel(*args, lo, hi)`` over ``0:rows``, split over up to
    ``torch.get_num_threads()`` threads (the kernel releases the GIL)."""
    n = min(torch.get_num_threads(), rows // _MIN_ROWS_PER_WORKER)
    if n <= 1:
        kernel(*args, 0, rows)
        return
    bounds = [rows * i // n for i in range(n + 1)]
    futures = [_workers(n).submit(kernel, *args, lo, hi) for lo, hi in itertools.pairwise(bounds)]
    for future in futures:
        future.result()


def _bank_inputs(
    tables: torch.Tensor, dt: torch.Tensor, start: torch.Tensor, n_samples: int
) -> tuple[np.ndarray, ...]:
    """The bank kernels' shared inputs: tables, ``dt``, ``start``, the sample indices as
    floats and ``consts = (L, L - 1, 1)``, all in the tables' dtype."""
    size = tables.shape[-1] - 1
    n = torch.arange(n_samples, dtype=tables.dtype)
    consts = torch.tensor([size, size - 1, 1], dtype=tables.dtype)
    return _np(tables), _np(dt), _np(start), n.numpy(), consts.numpy()


def bank_forward(
    tables: torch.Tensor, dt: torch.Tensor, start: torch.Tensor, out: torch.Tensor
) -> None:
    """The wavetable bank's output written into ``out [B, K, N]`` (see
    :func:`_bank_forward_py`). On the calling thread: split over two threads it was no
    faster here (torch's OpenMP workers spin on the other core after each op)."""
    inputs = _bank_inputs(tables, dt, start, out.shape[1] * out.shape[2])
    _kernel("bank_forward")(*inputs, out.numpy(), 0, tables.shape[0])


def bank_adjoint(
    tables: torch.Tensor, dt: torch.Tensor, start: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the wavetable bank's output ``[B, K, N]`` w.r.t. ``tables
    [B, V, L+1]``, ``dt`` and ``start [B, V]`` (see :func:`_bank_adjoint_py`)."""
    g_tab = torch.zeros(tables.shape, dtype=tables.dtype)
    g_dt = np.zeros(dt.shape)
    g_start = np.zeros(start.shape)
    g = grad.detach()
    if any(stride < 0 for stride in g.stride()):  # pragma: no cover - numpy views need >= 0
        g = g.contiguous()
    inputs = _bank_inputs(tables, dt, start, grad.shape[1] * grad.shape[2])
    _split_rows(
        _kernel("bank_adjoint"), tables.shape[0], *inputs, g.numpy(), g_tab.numpy(), g_dt, g_start
    )
    to = functools.partial(torch.as_tensor, dtype=dt.dtype)
    return g_tab, to(g_dt), to(g_start)
