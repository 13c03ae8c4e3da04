"""Faithfulness of an explanation to the detector (L-MAC definitions, paper Sec. 3.4; docs/formulas.md).

The binarised heatmap H keeps the spoof's time-frequency bins it marks and REPLACES the rest by
the real counterpart in magnitude and phase: ``x_in = ISTFT(H*Ms + (1-H)*Mb, H*Ps + (1-H)*Pb)``,
which for a binary H equals ``ISTFT(H*Ss + (1-H)*Sb)``. With one softmax over the detector's two
logits (index 1 = spoof), p on the spoof input, o on the masked-in input and c = argmax p:

* AI = 100*[p_c < o_c]; AD = 100*max(0, p_c - o_c)/p_c; AG = 100*max(0, o_c - p_c)/(1 - p_c);
  Fid-In = 100*[argmax o == c].

Policies: a tie between the two logits resolves to class 1 (spoof: every scored row is a spoof),
for c and for argmax o alike. p_c >= 0.5, so AD is always defined; when p_c == 1 there is no room
to gain and AG is 0. An empty H (e.g. from a constant heatmap) is not special-cased: the masked-in
input is then the real utterance, which is what such an explanation claims.
torch is imported lazily so the rest of the benchmark stays torch-free.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from annotate.core.spectral import DEFAULT_STFT, STFTConfig, istft, stft

FAITHFULNESS_METRICS = ("AI", "AD", "AG", "FidIn")


def masked_in(spoof: np.ndarray, real: np.ndarray, keep: np.ndarray, cfg: STFTConfig = DEFAULT_STFT) -> np.ndarray:
    """The spoof's bins where ``keep`` is 1 and the real's elsewhere (magnitude and phase), back to a waveform."""
    spoof = np.asarray(spoof, dtype=np.float32)
    real = np.asarray(real, dtype=np.float32)
    if spoof.shape != real.shape or spoof.ndim != 1:
        raise ValueError(f"spoof {spoof.shape} and real {real.shape} must be 1-D signals of the same length")
    expected = (cfg.n_frames(spoof.size), cfg.n_freq)
    h = np.asarray(keep, dtype=np.float32)
    if h.shape != expected:
        raise ValueError(f"heatmap shape {h.shape} does not match the STFT grid {expected} of a {spoof.size}-sample signal")
    ss, sb = stft(np.stack([spoof, real]), cfg)
    return istft(h * ss + (1.0 - h) * sb, spoof.size, cfg).astype(np.float32)


def _argmax_spoof_ties(probs: np.ndarray) -> np.ndarray:
    """Predicted class per row; equal probabilities resolve to 1 (spoof)."""
    return (probs[:, 1] >= probs[:, 0]).astype(np.int64)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def scores_from_probs(p: np.ndarray, o: np.ndarray) -> dict[str, np.ndarray]:
    """AI, AD, AG, Fid-In (percent) per row from probabilities (n, 2) on the spoof and masked-in inputs."""
    p, o = np.asarray(p, dtype=np.float64), np.asarray(o, dtype=np.float64)
    c = _argmax_spoof_ties(p)
    rows = np.arange(len(c))
    pc, oc = p[rows, c], o[rows, c]
    room = 1.0 - pc
    ag = np.divide(np.maximum(0.0, oc - pc), room, out=np.zeros_like(pc), where=room > 0)
    return {
        "AI": 100.0 * (pc < oc),
        "AD": 100.0 * np.maximum(0.0, pc - oc) / pc,
        "AG": 100.0 * ag,
        "FidIn": 100.0 * (_argmax_spoof_ties(o) == c),
    }


def detector_probs(detector: Callable, waveforms: np.ndarray) -> np.ndarray:
    """Softmax of ``detector(waveforms (B, N) float tensor) -> logits (B, 2)``, without gradients."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(waveforms, dtype=np.float32))
    with torch.no_grad():
        logits = detector(x)
    logits = np.asarray(logits.detach().cpu().double().numpy() if hasattr(logits, "detach") else logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape != (x.shape[0], 2):
        raise ValueError(f"detector returned logits of shape {tuple(logits.shape)}; expected ({x.shape[0]}, 2)")
    return _softmax(logits)


def faithfulness(
    detector: Callable, spoof: np.ndarray, real: np.ndarray, keep: np.ndarray, cfg: STFTConfig = DEFAULT_STFT
) -> dict[str, float]:
    """AI, AD, AG, Fid-In (percent) of one binary heatmap ``keep`` for one spoof/real pair."""
    x_in = masked_in(spoof, real, keep, cfg)
    probs = detector_probs(detector, np.stack([np.asarray(spoof, dtype=np.float32), x_in]))
    out = scores_from_probs(probs[:1], probs[1:])
    return {k: float(v[0]) for k, v in out.items()}
