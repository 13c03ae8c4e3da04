"""Small synthetic vocmask datasets for tests and perf scripts (written with the real dataset writer).

Each spoof is its real twin with extra energy in a vocoder-specific frequency band, so the Eq. 2
mask is a real annotation of a known difference; ``with_audio=False`` skips audio and STFTs (random
5%-density masks) for large scoring benchmarks.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from annotate.core.audio import encode_flac
from annotate.core.dataset import ShardWriter, features
from annotate.core.spectral import DEFAULT_STFT, artifact_mask, log_magnitude, stft, threshold

VOCODER_BANDS = {"melgan": (2000.0, 4000.0), "hifigan": (5000.0, 7000.0), "waveglow": (500.0, 1500.0)}


def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float, sr: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n)
    return (x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def _pair(rng: np.random.Generator, n: int, band: tuple[float, float], sr: int) -> tuple[np.ndarray, np.ndarray]:
    """A real signal (decaying harmonics + noise) and its spoof (plus band-limited noise bursts)."""
    t = np.arange(n) / sr
    f0 = rng.uniform(100, 220)
    real = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) / k for k in range(1, 12))
    real = 0.3 * real / np.abs(real).max() + 0.01 * rng.standard_normal(n)
    env = (np.sin(2 * np.pi * rng.uniform(2, 5) * t) > 0).astype(np.float32)
    spoof = real + 0.15 * env * _band_noise(rng, n, *band, sr)
    return real.astype(np.float32), np.clip(spoof, -1, 1).astype(np.float32)


def write_dataset(
    out: str | Path,
    n_per_vocoder: int = 4,
    vocoders: Sequence[str] = ("melgan", "hifigan"),
    splits: Sequence[str] = ("test",),
    seconds: float = 0.5,
    seed: int = 0,
    with_audio: bool = True,
    frames: int | None = None,
) -> Path:
    """Write ``out/data/{split}-00000-of-00001.parquet`` (+ build.json) and return ``out``."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    cfg = DEFAULT_STFT
    feats = features()
    silence = encode_flac(np.zeros(160, dtype=np.float32), cfg.sample_rate)
    for split in splits:
        w = ShardWriter(out / "data" / f"{split}-00000-of-00001.parquet", feats, metadata={"version": "synthetic"}, rows_per_group=64)
        for v in vocoders:
            band = VOCODER_BANDS.get(v, (3000.0, 5000.0))
            for k in range(n_per_vocoder):
                uid = f"{split}_{k:05d}"
                if with_audio:
                    n = int(seconds * cfg.sample_rate)
                    real, spoof = _pair(rng, n, band, cfg.sample_rate)
                    ss, sb = stft(np.stack([spoof, real]), cfg)
                    mask, d = artifact_mask(np.abs(ss), np.abs(sb))
                    logmag = log_magnitude(ss)
                    audio = {"spoof": encode_flac(spoof, cfg.sample_rate), "real": encode_flac(real, cfg.sample_rate)}
                else:
                    nf = frames or cfg.n_frames(int(seconds * cfg.sample_rate))
                    n = (nf - 1) * cfg.hop_length
                    d = rng.random((nf, cfg.n_freq), dtype=np.float32)
                    mask, logmag = threshold(d), rng.standard_normal((nf, cfg.n_freq)).astype(np.float32)
                    audio = {"spoof": silence, "real": silence}
                w.write(
                    {
                        "id": f"{uid}_{v}", "utt_id": uid, "speaker": f"spk{k % 3}", "vocoder": v,
                        "source": "synthetic", "split": split,
                        "spoof_audio": {"bytes": audio["spoof"], "path": f"{uid}_{v}.flac"},
                        "real_audio": {"bytes": audio["real"], "path": f"{uid}.flac"},
                        "spoof_logmag": logmag, "mask": mask, "diff": d.astype(np.float16),
                        "num_samples": n, "offset": 0, "align_score": 0.0,
                        "rawboost": 0, "rawboost_seed": 0, "augment_copy": 0,
                    }
                )
        w.close()
    (out / "build.json").write_text(json.dumps({"version": "synthetic", "stft": cfg.to_dict(), "seed": seed}))
    return out
