"""The demo's vocoders: mel + Griffin-Lim (here), WORLD, LPC and the codecs (from
:mod:`annotate.pipeline.vocoders`), and the framing effects that shift and cut a spoof."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...pipeline.vocoders import fit as _fit
from .config import HOP

GL_FFT = 1024  # Griffin-Lim vocoder frame: 4 hops, so the overlap-add below works on hop-sized blocks


@lru_cache(maxsize=4)
def _mel_pinv(sr: int) -> tuple[np.ndarray, np.ndarray]:
    import librosa

    fb = librosa.filters.mel(sr=sr, n_fft=GL_FFT, n_mels=80, fmin=0.0, fmax=sr / 2)
    return fb, np.linalg.pinv(fb)


def _gl_window() -> np.ndarray:
    return np.hanning(GL_FFT + 1)[:GL_FFT]  # periodic Hann


def _stft(y: np.ndarray) -> np.ndarray:
    """Centred (zero-padded) STFT, frames x bins, n_fft 1024, hop 256."""
    from scipy import fft as sfft

    yp = np.pad(y, GL_FFT // 2)
    idx = np.arange(1 + len(y) // HOP)[:, None] * HOP + np.arange(GL_FFT)[None, :]
    return sfft.rfft(yp[idx] * _gl_window(), axis=1)


def _istft(spec: np.ndarray, n: int) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`_stft` (least-squares ISTFT), ``n`` samples."""
    from scipy import fft as sfft

    w = _gl_window()
    k = GL_FFT // HOP
    t = spec.shape[0]
    frames = (sfft.irfft(spec, n=GL_FFT, axis=1) * w).reshape(t, k, HOP)
    out = np.zeros((t + k - 1, HOP))
    norm = np.zeros((t + k - 1, HOP))
    w2 = (w * w).reshape(k, HOP)
    for j in range(k):
        out[j:j + t] += frames[:, j]
        norm[j:j + t] += w2[j]
    y = out.ravel() / np.maximum(norm.ravel(), 1e-8)
    return _fit(y[GL_FFT // 2:], n)


def griffin_lim(mag: np.ndarray, n: int, rng: np.random.Generator, n_iter: int = 32, momentum: float = 0.99) -> np.ndarray:
    """Fast Griffin-Lim (Perraudin et al. 2013) from a magnitude (frames x bins), random initial phase."""
    angles = np.exp(2j * np.pi * rng.random(mag.shape))
    prev = 0.0
    for _ in range(n_iter):
        rebuilt = _stft(_istft(mag * angles, n))
        angles = rebuilt - (momentum / (1 + momentum)) * prev
        angles /= np.abs(angles) + 1e-16
        prev = rebuilt
    return _istft(mag * angles, n)


def voc_griffinlim(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """80-band mel magnitude (n_fft 1024, hop 256) -> pseudo-inverse mel inversion -> 32 Griffin-Lim iterations."""
    fb, inv = _mel_pinv(sr)
    mel = np.abs(_stft(x)) @ fb.T
    lin = np.maximum(mel @ inv.T, 1e-10)  # Tacotron-style mel inversion: phase and fine structure are lost
    return griffin_lim(lin, len(x), rng)


def frame_effects(y: np.ndarray, rng: np.random.Generator, sr: int) -> tuple[np.ndarray, int]:
    """Vocoder framing: for about half the spoofs drop or prepend 1-40 ms at the start, then make the length
    a multiple of the hop (trim or pad the end). Returns ``(spoof, edge offset in samples)``."""
    shift = 0
    if rng.random() < 0.5:
        s = int(rng.integers(int(0.001 * sr), int(0.040 * sr) + 1))
        if rng.random() < 0.5:
            y, shift = y[s:], -s
        else:
            lead = 10 ** (-70 / 20) * rng.normal(0, 1, s)
            y, shift = np.concatenate([lead, y]), s
    frames = len(y) // HOP + (1 if (len(y) % HOP and rng.random() < 0.5) else 0)
    n = max(1, frames) * HOP
    if len(y) < n:
        y = np.concatenate([y, 10 ** (-70 / 20) * rng.normal(0, 1, n - len(y))])
    return y[:n], shift
