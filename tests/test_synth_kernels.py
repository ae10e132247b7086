"""The synth's hand-written kernels: custom autograd functions and their fast paths.

Each kernel is checked against the straightforward composition it replaces (values,
often bit for bit) and by float64 ``gradcheck``.
"""

import subprocess
import sys
import textwrap

import pytest
import torch
import torchaudio.functional as AF
from torch.autograd import gradcheck

from aegym.synth import SynthConfig, Voice, _compiled, filters, oscillators
from aegym.synth.filters import ladder_filter, tpt_step
from aegym.synth.oscillators import phase_ramp, read_table, wavetable_bank

SR = 16_000
F64 = torch.float64


@pytest.fixture(params=["step_loop", "row_loop", "compiled"])
def allpole_path(request, monkeypatch):
    """Run a test with each all-pole loop: the PyTorch time-step loop, torchaudio's row
    loop, or the compiled (numba) kernel that the CPU runs by default."""
    rows = 1 if request.param == "step_loop" else 1 << 30
    monkeypatch.setattr(filters, "_STEP_LOOP_MIN_ROWS", rows)
    with _compiled.compiled_kernels(request.param == "compiled"):
        yield request.param


@pytest.fixture
def torch_loops():
    """Run a test on the PyTorch loops (the compiled kernels switched off)."""
    with _compiled.compiled_kernels(False):
        yield


def stable_biquads(rows: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Denominators ``1 + a1 z⁻¹ + a2 z⁻²`` with complex poles of radius 0.8-0.99."""
    radius = 0.8 + 0.19 * torch.rand(rows, dtype=dtype)
    angle = 3.0 * torch.rand(rows, dtype=dtype)
    return -2 * radius * torch.cos(angle), radius**2


def allpole_args(n: int) -> list[torch.Tensor]:
    """Inputs of ``_AllPole``: signal ``[n, 5]``, stable biquad poles, two start states."""
    a1, a2 = stable_biquads(5, F64)
    return [
        torch.randn(n, 5, dtype=F64),
        a1,
        a2,
        torch.randn(5, dtype=F64),
        torch.randn(5, dtype=F64),
    ]


@pytest.mark.parametrize("n", [1, 2, 7])
def test_allpole_gradcheck(allpole_path, n):
    args = allpole_args(n)
    assert gradcheck(filters._AllPole.apply, [a.requires_grad_() for a in args])


def test_allpole_is_lfilter_bit_for_bit(allpole_path):
    a1, a2 = stable_biquads(40)
    x = torch.randn(128, 40)
    zero = torch.zeros(40)
    y = filters._allpole(x, a1, a2, zero, zero)
    a = torch.stack([torch.ones(40), a1, a2], -1)
    b = torch.zeros(40, 3)
    b[:, 0] = 1.0
    ref = AF.lfilter(x.T.contiguous(), a, b, clamp=False, batching=True).T
    assert torch.equal(y, ref)


def test_allpole_history_equals_input_corrections():
    """A history enters an all-pole section exactly as corrections of two inputs."""
    a1, a2 = stable_biquads(40)
    x = torch.randn(64, 40)
    h1, h2 = torch.randn(40), torch.randn(40)
    corrected = x.clone()
    corrected[0] -= a1 * h1
    corrected[0] -= a2 * h2
    corrected[1] -= a2 * h1
    zero = torch.zeros(40)
    loop = filters._allpole_loop(x, a1, a2, h1, h2)
    assert torch.equal(loop, filters._allpole_loop(corrected, a1, a2, zero, zero))
    assert torch.equal(loop, filters._allpole_rowwise(corrected, a1, a2))


def test_ladder_filter_same_on_both_loops(monkeypatch, torch_loops):
    x = torch.randn(3, 1024, requires_grad=True)
    cutoff = (torch.rand(3, 8) * 4000 + 50).requires_grad_()
    res = torch.rand(3, 8, requires_grad=True)
    outs = []
    for rows in (1, 1 << 30):
        monkeypatch.setattr(filters, "_STEP_LOOP_MIN_ROWS", rows)
        y, state = ladder_filter(x, cutoff, res, SR)
        grads = torch.autograd.grad(y.square().sum(), (x, cutoff, res))
        outs.append((y, state.tpt, grads))
    (y0, s0, g0), (y1, s1, g1) = outs
    assert torch.equal(y0, y1) and torch.equal(s0, s1)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))


def test_binomial_fir_values_and_gradcheck():
    x = torch.randn(9, 3, dtype=F64)
    padded = torch.nn.functional.pad(x, (0, 0, 4, 0))
    ref = sum(c * padded[4 - j : 4 - j + 9] for j, c in enumerate([1, 4, 6, 4, 1]))
    torch.testing.assert_close(filters._binomial_fir(x), ref)
    assert gradcheck(filters._binomial_fir, (x.requires_grad_(),))


@pytest.mark.parametrize("compiled", [False, True])
def test_affine_scan_values_and_gradcheck(compiled):
    with _compiled.compiled_kernels(compiled):
        check_affine_scan()


def check_affine_scan():
    mats = 0.5 * torch.randn(6, 4, 4, 3, dtype=F64)
    vecs, s0 = torch.randn(6, 4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    out = filters._AffineScan.apply(mats, vecs, s0)
    state = s0
    for k in range(6):
        state = torch.einsum("ijb,jb->ib", mats[k], state) + vecs[k]
        torch.testing.assert_close(out[k], state)
    args = [t.clone().requires_grad_() for t in (mats, vecs, s0)]
    assert gradcheck(filters._AffineScan.apply, args)
    # The log-depth scan for few voices: same states, K last.
    parallel = filters._prefix_scan(mats.permute(1, 2, 3, 0), vecs.permute(1, 2, 0), s0)
    torch.testing.assert_close(parallel.permute(2, 0, 1), out)


def test_ladder_filter_same_with_either_scan(monkeypatch):
    x = torch.randn(3, 1024, dtype=F64, requires_grad=True)
    cutoff = (torch.rand(3, 8, dtype=F64) * 4000 + 50).requires_grad_()
    res = torch.rand(3, 8, dtype=F64)
    results = []
    for limit in (0, 100):  # sequential, then log-depth scan under autograd
        monkeypatch.setattr(filters, "_PARALLEL_SCAN_MAX_BATCH", limit)
        y, state = ladder_filter(x, cutoff, res, SR)
        results.append((y, state.tpt, *torch.autograd.grad(y.square().sum(), (x, cutoff))))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("rows", [5, 5000])  # broadcast product / outer products
def test_rows_last_matmul(rows):
    a = torch.randn(4, 3, rows, dtype=F64, requires_grad=True)
    b = torch.randn(3, 2, rows, dtype=F64, requires_grad=True)
    out = filters._rmm(a, b)
    ref = (a.permute(2, 0, 1) @ b.permute(2, 0, 1)).permute(1, 2, 0)
    torch.testing.assert_close(out, ref)
    w = torch.randn_like(ref)
    grads = torch.autograd.grad((out * w).sum(), (a, b))
    for g, g_ref in zip(grads, torch.autograd.grad((ref * w).sum(), (a, b)), strict=True):
        torch.testing.assert_close(g, g_ref)
    if rows < 10:
        assert gradcheck(filters._rmm, (a, b))


def test_rows_last_matrix_power():
    m = 0.4 * torch.randn(4, 4, 5, dtype=F64)
    ref = torch.linalg.matrix_power(m.permute(2, 0, 1), 13).permute(1, 2, 0)
    torch.testing.assert_close(filters._rmatpow(m, 13), ref)


def test_tpt_matrices_match_stepping_the_ladder():
    g = torch.tensor([0.01, 0.3, 2.0], dtype=F64)
    k = torch.tensor([0.001, 2.0, 3.9], dtype=F64)
    trans, obs = filters._tpt_matrices(g, k)
    s = torch.randn(3, 4, dtype=F64)
    state, zero = s, torch.zeros(3, dtype=F64)
    for n in range(4):
        state, y = tpt_step(state, zero, g, k)
        torch.testing.assert_close(y, torch.einsum("jr,rj->r", obs[n], s))
        if n == 0:
            torch.testing.assert_close(state, torch.einsum("ijr,rj->ri", trans, s))


def reference_bank(tables, freqs, n, phase0):
    """The composition :func:`wavetable_bank` fuses."""
    out = None
    ends = []
    for v in range(tables.shape[1]):
        phase, end = phase_ramp(freqs[:, v], n, SR, phase0[:, v])
        read = read_table(tables[:, v], phase)
        out = read if out is None else out + read
        ends.append(end)
    return out, torch.stack(ends, 1)


@pytest.mark.parametrize("chunk_samples", [1, 1 << 16])
def test_wavetable_bank_equals_ramp_and_table_reads(monkeypatch, chunk_samples):
    monkeypatch.setattr(oscillators, "_BANK_CHUNK_SAMPLES", chunk_samples)
    tables = torch.randn(4, 2, 2049, requires_grad=True)
    freqs = (torch.rand(4, 2) * 3000 + 30).requires_grad_()
    phase0 = torch.rand(4, 2)
    out, ends = wavetable_bank(tables, freqs, 3000, SR, phase0)
    ref, ref_ends = reference_bank(tables, freqs, 3000, phase0)
    assert torch.equal(out, ref) and torch.equal(ends, ref_ends)
    w = torch.randn_like(ref)
    grads = torch.autograd.grad((out * w).sum(), (tables, freqs))
    grads_ref = torch.autograd.grad((ref * w).sum(), (tables, freqs))
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("compiled", [False, True])
def test_wavetable_bank_gradcheck(monkeypatch, compiled):
    monkeypatch.setattr(_compiled, "_state", {"on": compiled})
    monkeypatch.setattr(oscillators, "_BANK_CHUNK_SAMPLES", 40)  # two voices per chunk
    tables = torch.randn(3, 2, 17, dtype=F64, requires_grad=True)
    # Slow phases over few samples: the finite differences stay within one table step.
    dt = (0.01 + 0.05 * torch.rand(3, 2, dtype=F64)).requires_grad_()
    start = torch.rand(3, 2, dtype=F64, requires_grad=True)

    def fn(t, d, s):
        return oscillators._WavetableBank.apply(t, d, s, 20, 4)  # five blocks of four

    assert gradcheck(fn, (tables, dt, start), eps=1e-7, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("block", [4, 60])  # time-major blocks, and one plain block
def test_compiled_bank_equals_the_torch_path(dtype, block):
    """The compiled forward (the CPU default) gives the PyTorch path's values bit for
    bit (same position ops, lerp's fused multiply-adds); the compiled adjoint recomputes
    each read's position the same way: the torch backward's gradients up to summation
    order."""
    gen = torch.Generator().manual_seed(3)
    tables = torch.randn(5, 2, 33, generator=gen, dtype=dtype, requires_grad=True)
    dt = (0.3 * torch.rand(5, 2, generator=gen, dtype=dtype)).requires_grad_()
    start = torch.rand(5, 2, generator=gen, dtype=dtype, requires_grad=True)
    w = torch.randn(5, 60 // block, block, generator=gen, dtype=dtype)
    grads, outs = {}, {}
    for on in (False, True):
        with _compiled.compiled_kernels(on):
            out = oscillators._WavetableBank.apply(tables, dt, start, 60, block)
            grads[on] = torch.autograd.grad((out * w).sum(), (tables, dt, start))
        outs[on] = out.detach()
    assert torch.equal(outs[True], outs[False])
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    for a, b in zip(grads[True], grads[False], strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_compiled_bank_is_the_same_on_any_number_of_threads(monkeypatch):
    """Voices are split over threads whole, so the thread count changes nothing."""
    monkeypatch.setattr(_compiled, "_MIN_ROWS_PER_WORKER", 1)
    gen = torch.Generator().manual_seed(4)
    tables = torch.randn(7, 2, 65, generator=gen)
    dt, start = 0.2 * torch.rand(7, 2, generator=gen), torch.rand(7, 2, generator=gen)
    grad = torch.randn(7, 10, 16, generator=gen)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            out = torch.empty(16, 7, 10).permute(1, 2, 0)  # time-major, like the voice's
            _compiled.bank_forward(tables, dt, start, out)
            results.append((out, *_compiled.bank_adjoint(tables, dt, start, grad)))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_compiled_bank_threads_survive_fork_and_thread_count_changes():
    """A process forked after the kernel's thread pool started gets its own pool (an
    inherited one has no threads and would hang), and changing the thread count
    replaces the pool instead of leaking its threads."""
    script = textwrap.dedent(
        """
        import multiprocessing as mp, threading, torch
        from aegym.synth import _compiled
        _compiled._MIN_ROWS_PER_WORKER = 1
        args = (torch.randn(6, 2, 33), 0.2 * torch.rand(6, 2), torch.rand(6, 2),
                torch.randn(6, 4, 16))
        torch.set_num_threads(2)
        ref = _compiled.bank_adjoint(*args)
        def child(q):
            torch.set_num_threads(2)
            q.put(all(torch.equal(a, b) for a, b in zip(_compiled.bank_adjoint(*args), ref)))
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        p.join(60)
        assert p.exitcode == 0 and q.get(timeout=5)
        for n in (3, 2):
            torch.set_num_threads(n)
            _compiled.bank_adjoint(*args)
        names = [t.name for t in threading.enumerate() if t.name.startswith("aegym-kernel")]
        assert len(names) <= 2, names
        print("ok")
        """
    )
    command = [sys.executable, "-c", script]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_scaled_fir_values_and_gradcheck():
    x = torch.randn(9, 3, dtype=F64)
    gain = torch.rand(3, dtype=F64) + 0.5
    out, tail = filters._ScaledFIR.apply(x, gain)
    torch.testing.assert_close(out, filters._binomial_fir(x) * gain)
    torch.testing.assert_close(tail, x[-4:].flip(0))
    args = (x.requires_grad_(), gain.requires_grad_())
    assert gradcheck(filters._ScaledFIR.apply, args)


def test_tpt_transition_matches_stepping():
    g = torch.tensor([0.002, 0.3, 6.0], dtype=F64)
    k = torch.tensor([0.001, 2.0, 3.9], dtype=F64)
    trans, _ = filters._tpt_matrices(g, k)
    torch.testing.assert_close(filters._tpt_transition(g, k), trans)


def test_hand_over_maps_invert_each_other():
    """TPT state <-> free-response numerator <-> section histories round trips."""
    g = torch.tensor([0.002, 0.05, 0.3, 1.0, 6.0], dtype=F64)
    k = torch.tensor([0.001, 0.5, 2.0, 3.9, 1.0], dtype=F64)
    hand = filters._hand_over(g, k)
    sigma = torch.randn(4, 5, dtype=F64)
    num = filters._numerator_from_tpt(sigma, hand)
    torch.testing.assert_close(filters._tpt_from_numerator(num, hand), sigma, rtol=1e-7, atol=0)
    a1, a2 = stable_biquads(10, F64)
    a1, a2 = a1.view(2, 5), a2.view(2, 5)
    hists = filters._histories_from_numerator(num, a1, a2)
    zero = torch.zeros(4, 5, dtype=F64)
    back = filters._numerator_from_df(zero, hists[:2], hists[2:], torch.ones(5, dtype=F64), a1, a2)
    torch.testing.assert_close(back, num)


def test_numerator_gives_the_free_response():
    """The cascade's end state, continued with zero input, rings out as n(z)/(D1 D2)."""
    a1, a2 = stable_biquads(2, F64)
    x = torch.randn(32, 1, dtype=F64)
    gain = torch.tensor([0.7], dtype=F64)
    full_x = torch.cat([x, torch.zeros(16, 1, dtype=F64)])
    zero = torch.zeros(1, dtype=F64)
    w, _ = filters._ScaledFIR.apply(full_x, gain)
    v = filters._allpole_loop(w, a1[:1], a2[:1], zero, zero, fused=True)
    y = filters._allpole_loop(v, a1[1:], a2[1:], zero, zero, fused=True)
    num = filters._numerator_from_df(
        x[-4:].flip(0), v[30:32].flip(0), y[30:32].flip(0), gain, a1.view(2, 1), a2.view(2, 1)
    )
    impulse = torch.zeros(16, 1, dtype=F64)
    impulse[:4] = num
    ring = filters._allpole_loop(impulse, a1[:1], a2[:1], zero, zero, fused=True)
    ring = filters._allpole_loop(ring, a1[1:], a2[1:], zero, zero, fused=True)
    torch.testing.assert_close(ring, y[32:])


def test_sub_blocks_give_the_same_filter(monkeypatch, torch_loops):
    x = torch.randn(2, 1024, dtype=F64)
    cutoff = torch.rand(2, 8, dtype=F64) * 4000 + 50
    res = torch.rand(2, 8, dtype=F64)
    monkeypatch.setattr(filters, "_MIN_LOOP_ROWS", 1)  # no sub-blocks
    whole, s_whole = ladder_filter(x, cutoff, res, SR)
    monkeypatch.setattr(filters, "_MIN_LOOP_ROWS", 1 << 20)  # as many as allowed
    assert filters._sub_blocks(128, 16, x) == 8
    split, s_split = ladder_filter(x, cutoff, res, SR)
    torch.testing.assert_close(split, whole)
    torch.testing.assert_close(s_split.tpt, s_whole.tpt)


def test_ladder_input_gain_scales_the_input():
    xt = torch.randn(128, 6, dtype=F64, requires_grad=True)
    cutoff = torch.rand(2, 3, dtype=F64) * 3000 + 100
    res = torch.rand(2, 3, dtype=F64)
    gain = torch.tensor([0.5, 2.0], dtype=F64, requires_grad=True)
    y, s = filters._ladder_filter_blocks(xt, cutoff, res, SR, input_gain=gain)
    ref, s_ref = filters._ladder_filter_blocks(xt * gain.repeat_interleave(3), cutoff, res, SR)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(s.tpt, s_ref.tpt)
    w = torch.randn_like(y)
    grads = torch.autograd.grad((y * w).sum(), (xt, gain))
    grads_ref = torch.autograd.grad((ref * w).sum(), (xt, gain))
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_noisy_drive_equals_soft_clip_and_gradcheck():
    from aegym.synth.shaper import _NoisyDrive, noisy_drive, soft_clip

    x = torch.randn(3, 4, 5)
    noise = torch.rand(1, 4, 5) * 2 - 1
    level = torch.rand(3, 1, 1)
    drive_db = torch.rand(3) * 24
    gain = torch.pow(10.0, drive_db / 20.0)[:, None, None]
    out = noisy_drive(x, noise, level, gain) / torch.tanh(gain)
    torch.testing.assert_close(out, soft_clip(x + level * noise, drive_db[:, None]))
    args = [t.double().requires_grad_() for t in (x, noise, level, gain)]
    assert gradcheck(_NoisyDrive.apply, args)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_allpole_gradcheck_on_the_gpu_path(monkeypatch, torch_loops, n):
    """The lfilter-based path (GPU) on CPU: same values and gradients as the fused loop."""
    args = allpole_args(n)
    fused = filters._AllPole.apply(*args)
    monkeypatch.setattr(filters, "_fused_loops", lambda x: False)
    for a, b in zip(filters._AllPole.apply(*args), fused, strict=True):
        torch.testing.assert_close(a, b)
    assert gradcheck(filters._AllPole.apply, [a.requires_grad_() for a in args])


@pytest.mark.parametrize("n", [1, 2, 9])
def test_compiled_cascades_equal_two_allpole_passes_bit_for_bit(n):
    """The no-gradient kernels of the ladder (zero-state end states; the corrected pass
    without its intermediate buffer) compute what two :func:`_compiled.allpole` calls do."""
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, 6, generator=gen)
    a1, a2, b1, b2 = (0.9 * torch.rand(6, generator=gen) - 0.45 for _ in range(4))
    hist = torch.randn(4, 6, generator=gen)
    zero = torch.zeros(6)
    v = _compiled.allpole(x, a1, a2, zero, zero)
    y = _compiled.allpole(v, b1, b2, zero, zero)
    v_end, y_end = _compiled.zero_state_ends(x, a1, a2, b1, b2)
    assert torch.equal(v_end, filters._last_two(v, zero))
    assert torch.equal(y_end, filters._last_two(y, zero))
    v = _compiled.allpole(x, a1, a2, hist[0], hist[1])
    y = _compiled.allpole(v, b1, b2, hist[2], hist[3])
    assert torch.equal(_compiled.cascade(x, a1, a2, b1, b2, hist), y)


def test_voice_renders_the_same_with_and_without_gradients():
    """Without gradients the ladder takes its buffer-free kernels and the shaper works
    in place: the audio is the same bit for bit."""
    voice = Voice(SynthConfig(duration_s=0.1))
    knobs = voice.knob_space.random_unit(5, torch.Generator().manual_seed(0))
    with torch.no_grad():
        audio = voice(knobs)
    assert torch.equal(audio, voice(knobs.clone().requires_grad_()).detach())


def test_compiled_allpole_is_lfilter_and_the_unfused_loop_bit_for_bit():
    """The compiled kernel rounds like lfilter (products, then differences), with a
    history entering like lfilter's input corrections."""
    a1, a2 = stable_biquads(40)
    x = torch.randn(128, 40)
    h1, h2 = torch.randn(40), torch.randn(40)
    y = _compiled.allpole(x, a1, a2, h1, h2)
    assert torch.equal(y, filters._allpole_loop(x, a1, a2, h1, h2))
    corrected = x.clone()
    corrected[0] -= a1 * h1
    corrected[0] -= a2 * h2
    corrected[1] -= a2 * h1
    assert torch.equal(y, filters._allpole_rowwise(corrected, a1, a2))


@pytest.mark.parametrize("n", [1, 2, 3, 64])
def test_compiled_allpole_adjoint_equals_the_torch_backward(n):
    """Same gradients as the PyTorch loop, with a full gradient, only the end-state
    gradient, or both (the zero-state pass is read only at its end)."""
    args = allpole_args(n)
    for use_grad, use_tail in ((True, False), (False, True), (True, True)):
        grads = []
        for on in (True, False):
            with _compiled.compiled_kernels(on):
                leaves = [a.clone().requires_grad_() for a in args]
                y, tail = filters._AllPole.apply(*leaves)
                loss = (y * torch.linspace(-1, 1, n, dtype=F64)[:, None]).sum() if use_grad else 0
                if use_tail:
                    loss = loss + (tail * torch.tensor([[0.3], [-1.7]], dtype=F64)).sum()
                grads.append(torch.autograd.grad(loss, leaves))
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_ladder_filter_compiled_equals_the_torch_path(monkeypatch, dtype):
    """The ladder with the compiled kernels (the CPU default) gives the PyTorch path's
    output, end state and gradients; float64 to ~1e-12, float32 to its rounding."""
    monkeypatch.setattr(filters, "_MIN_LOOP_ROWS", 1)  # same blocks on both paths
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2048, dtype=dtype, generator=gen, requires_grad=True)
    cutoff = (torch.rand(6, 16, dtype=dtype, generator=gen) * 4000 + 50).requires_grad_()
    res = torch.rand(6, 16, dtype=dtype, generator=gen, requires_grad=True)
    weight = torch.randn(6, 2048, dtype=dtype, generator=gen)
    results = []
    for on in (True, False):
        with _compiled.compiled_kernels(on):
            y, state = ladder_filter(x, cutoff, res, SR)
            grads = torch.autograd.grad((y * weight).sum(), (x, cutoff, res))
        results.append((y, state.tpt, *grads))
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == F64 else {"rtol": 1e-4, "atol": 1e-5}
    for a, b in zip(*results, strict=True):
        scale = float(b.detach().abs().max())
        torch.testing.assert_close(a, b, rtol=tol["rtol"], atol=tol["atol"] * scale)


def test_compiled_kernels_run_on_cpu_only_and_can_be_switched_off():
    cpu = torch.zeros(1)
    assert _compiled.enabled(cpu)  # numba comes with librosa, a core dependency
    assert not _compiled.enabled(torch.zeros(1, device="meta"))  # stands in for CUDA
    with _compiled.compiled_kernels(False):
        assert not _compiled.enabled(cpu)
        assert filters._sub_blocks(128, 16, cpu) > 1  # the torch loops amortise steps
    assert filters._sub_blocks(128, 16, cpu) == 1
