import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (env tests are many small ops; helpers in
    subprocesses also use one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def peak_frequency(audio: torch.Tensor, sample_rate: float, pad: int = 4) -> float:
    """Frequency of the largest spectral peak (Hann window, zero-padded FFT)."""
    n = audio.shape[-1]
    spec = torch.fft.rfft(audio.double() * torch.hann_window(n, dtype=torch.float64), n=n * pad)
    freqs = torch.fft.rfftfreq(n * pad, 1.0 / sample_rate)
    mag = spec.abs()
    mag[freqs < 20] = 0
    return float(freqs[mag.argmax()])
