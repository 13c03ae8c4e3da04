"""The demo's vocoding: Griffin-Lim at the demo's frame (WORLD, LPC and the codecs are used as they are from
:mod:`annotate.pipeline.vocoders`), and the framing effects that shift and cut a spoof."""
from __future__ import annotations

import numpy as np

from ...pipeline.vocoders import griffinlim
from .config import HOP

GL_FFT = 1024  # the demo's Griffin-Lim frame: 4 hops of 256 samples


def voc_griffinlim(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """80-band mel magnitude (n_fft 1024, hop 256) -> pseudo-inverse mel inversion -> 32 Griffin-Lim iterations."""
    return griffinlim(x, sr, rng, n_mels=80, n_iter=32, n_fft=GL_FFT)


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
