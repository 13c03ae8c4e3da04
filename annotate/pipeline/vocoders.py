"""Vocoders that re-synthesise real speech offline on a CPU, and the lag each output has against its input.

Built in: ``world`` (pyworld: DIO + StoneMask, CheapTrick, D4C, a 40-dim coded envelope), ``griffinlim``
(librosa: 80-band mel, pseudo-inverse mel inversion, 32 Griffin-Lim iterations), ``lpc`` (frame-wise all-pole filter on a
pulse/noise excitation), ``mp3`` and ``opus`` (libsndfile's encoders through soundfile, ``mp3@0.9`` = its
compression level 0-1, higher = fewer bits). A spec may also be ``[name=]module:function`` naming a callable
``function(wave, sr) -> wave`` (e.g. a neural vocoder the user has locally); its folder is ``name`` or the
function's name.

Lag convention (the aligner's): ``lag = position in output - position in input`` in samples, so
``out[n] ~ in[n - lag]``. Codecs keep the waveform, so their lag is the cross-correlation peak (exact);
the other vocoders keep no phase, so their lag is the shift that best matches log-magnitude spectra
(:func:`logmag_offset`), which is what defines a phase-free vocoder's timing.
"""
from __future__ import annotations

import importlib
import io
import re
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Callable

import numpy as np

WaveFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

BUILTIN = ("world", "griffinlim", "lpc", "mp3", "opus")
CODEC_LEVELS = {"mp3": 0.9, "opus": 0.9}  # default compression levels: ~25 and ~32 kbit/s at 16 kHz
CODEC_RATES = {  # sample rates each libsndfile encoder accepts
    "mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
    "opus": (8000, 12000, 16000, 24000, 48000),
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


class VocoderError(ValueError):
    """A vocoder spec that cannot be used (one line for the user, exit 2)."""


@dataclass(frozen=True)
class Vocoder:
    """A parsed ``--vocoders`` entry: its folder name, the spec it came from and how to run it."""

    name: str
    spec: str
    fn: WaveFn
    keeps_phase: bool  # True: the lag is a waveform cross-correlation peak; False: a log-magnitude match


# ------------------------------------------------------------------------------------------- built-ins


def fit(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``y`` at its end to ``n`` samples."""
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def f0_track(x: np.ndarray, sr: int, frame_period: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """WORLD's f0 (DIO refined by StoneMask, 60-400 Hz) and its frame times."""
    import pyworld

    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pyworld.dio(x, sr, f0_floor=60.0, f0_ceil=400.0, frame_period=frame_period)
    return pyworld.stonemask(x, f0, t, sr), t


def world(x: np.ndarray, sr: int, rng: np.random.Generator,
          f0t: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """WORLD analysis (CheapTrick, D4C) with the envelope coded to 40 dims, then WORLD synthesis."""
    import pyworld

    x = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = f0t if f0t is not None else f0_track(x, sr)
    sp = pyworld.cheaptrick(x, f0, t, sr)
    ap = pyworld.d4c(x, f0, t, sr)
    fft_size = (sp.shape[1] - 1) * 2
    sp = pyworld.decode_spectral_envelope(np.ascontiguousarray(pyworld.code_spectral_envelope(sp, sr, 40)), sr, fft_size)
    ap = pyworld.decode_aperiodicity(np.ascontiguousarray(pyworld.code_aperiodicity(ap, sr)), sr, fft_size)
    y = pyworld.synthesize(f0, sp, ap, sr, frame_period=1000.0 * (t[1] - t[0]))
    return fit(y, len(x))


def griffinlim(x: np.ndarray, sr: int, rng: np.random.Generator, n_mels: int = 80, n_iter: int = 32,
               n_fft: int | None = None) -> np.ndarray:
    """Mel-spectrogram vocoding as in Tacotron's Griffin-Lim baseline: 80-band mel magnitude (n_fft 64 ms unless
    given, hop n_fft / 4), pseudo-inverse back to a linear magnitude (NNLS inversion is much slower for a similar
    result; docs/performance.md), then fast Griffin-Lim from a random phase (librosa)."""
    import librosa

    n_fft = n_fft or 1 << int(np.ceil(np.log2(0.064 * sr)))
    hop = n_fft // 4
    fb = _mel_basis(sr, n_fft, n_mels)
    mag = np.abs(librosa.stft(np.asarray(x, dtype=np.float64), n_fft=n_fft, hop_length=hop))
    lin = np.maximum(_mel_pinv(sr, n_fft, n_mels) @ (fb @ mag), 1e-10)  # phase and fine structure are lost
    return librosa.griffinlim(lin, n_iter=n_iter, hop_length=hop, n_fft=n_fft, length=len(x), random_state=rng)


@lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)


@lru_cache(maxsize=8)
def _mel_pinv(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    return np.linalg.pinv(_mel_basis(sr, n_fft, n_mels))


def lpc_frames(frames: np.ndarray, order: int) -> np.ndarray:
    """All-pole coefficients ``[1, a1..ap]`` per row by the autocorrelation method (Levinson via solve_toeplitz)."""
    from scipy import fft as sfft
    from scipy.linalg import solve_toeplitz

    n = frames.shape[1]
    spec = sfft.rfft(frames, n=2 * n, axis=1)
    r = sfft.irfft(np.abs(spec) ** 2, axis=1)[:, :order + 1]
    r[:, 0] *= 1.0 + 1e-6  # white-noise correction keeps near-silent frames well conditioned
    r[:, 0] += 1e-12
    a = np.ones((len(frames), order + 1))
    for i in range(len(frames)):
        a[i, 1:] = -solve_toeplitz(r[i, :order], r[i, 1:order + 1])
    return a


def lpc(x: np.ndarray, sr: int, rng: np.random.Generator,
        f0t: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Frame-wise LPC (order 24, 512-sample Hann frames, hop 128) driven by a pulse/noise excitation, overlap-add."""
    import scipy.signal  # lazy: `annotate resynth --help` lists the vocoders without scipy

    n, win, hop, order = len(x), 512, 128, 24
    f0, t = f0t if f0t is not None else f0_track(x, sr)
    f0s = np.interp(np.arange(n) / sr, t, f0)
    vs = np.interp(np.arange(n) / sr, t, (f0 > 0).astype(float))
    f0s = np.where(f0s > 0, f0s, 100.0)
    ph = np.cumsum(f0s / sr)
    pulses = np.diff(np.floor(ph), prepend=0.0) * np.sqrt(sr / f0s)
    exc = vs * pulses + (np.sqrt(1 - 0.9 * vs)) * rng.normal(0, 1, n)

    w = np.hanning(win + 1)[:win]
    pad = win // 2
    xp = np.pad(x, (pad, pad + win))
    ep = np.pad(exc, (pad, pad + win))
    n_frames = 1 + n // hop
    idx = np.arange(n_frames)[:, None] * hop + np.arange(win)[None, :]
    frames = xp[idx] * w
    a = lpc_frames(frames, order)
    out = np.zeros(len(xp))
    target = np.sqrt(np.mean(frames ** 2, axis=1))
    for i in range(n_frames):
        y = scipy.signal.lfilter([1.0], a[i], ep[idx[i]]) * w
        rms = np.sqrt(np.mean(y ** 2))
        if np.isfinite(rms) and rms > 0:
            out[idx[i]] += y * (target[i] / rms)
    return out[pad:pad + n] / (win / hop / 2)  # periodic Hann overlap-adds to win / (2 hop)


def codec(x: np.ndarray, sr: int, rng: np.random.Generator, *, kind: str, level: float) -> np.ndarray:
    """Encode with libsndfile's MP3 (constant bit rate) or Ogg Opus encoder at ``level``, decode back."""
    import soundfile as sf

    fmt, subtype, mode = ("MP3", "MPEG_LAYER_III", "CONSTANT") if kind == "mp3" else ("OGG", "OPUS", None)
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), sr, format=fmt, subtype=subtype, compression_level=level, bitrate_mode=mode)
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float64", always_2d=True)
    return y[:, 0]


# ------------------------------------------------------------------------------------------- lags


def xcorr_lag(x: np.ndarray, y: np.ndarray, max_lag: int | None = None) -> int:
    """Integer ``lag`` with ``y[n] ~ x[n - lag]``: the waveform cross-correlation peak (within ``+-max_lag``)."""
    import scipy.signal  # lazy: `annotate resynth --help` lists the vocoders without scipy

    c = scipy.signal.correlate(y, x, mode="full", method="fft")
    lags = np.arange(-(len(x) - 1), len(y))
    if max_lag is not None:
        keep = np.abs(lags) <= max_lag
        c, lags = c[keep], lags[keep]
    return int(lags[int(np.argmax(c))])


def logmag_offset(real: np.ndarray, spoof: np.ndarray, *, center: int = 0, radius: int = 96, n_fft: int = 768,
                  hop: int = 200, floor_db: float = -50.0, steps: tuple[int, ...] = (16, 4, 1)) -> float:
    """Shift ``k`` (``spoof[n] ~ real[n - k]``) within ``center +- radius`` that minimises the mean absolute
    log-magnitude STFT difference (floor ``floor_db`` re the real's peak bin), to a fraction of a sample.

    Phase-free vocoders keep no waveform timing, so this spectral match is what defines their delay. The hop
    (200) is deliberately not a divisor of common vocoder hops (256), so frames sample every phase of their grid.
    Coarse-to-fine over ``steps`` (the distance is smooth and unimodal over a few ms), then a parabola.
    """
    from scipy import fft as sfft

    w = np.hanning(n_fft + 1)[:n_fft]
    lo, hi = center - radius, center + radius
    starts = np.arange(max(0, -lo), min(len(real), len(spoof) - hi) - n_fft + 1, hop)
    if len(starts) < 4:
        raise ValueError(f"signals too short ({len(real)}, {len(spoof)} samples) for an offset search of +-{radius}")
    grid = np.arange(n_fft)[None, :]

    def mag(x: np.ndarray, st: np.ndarray) -> np.ndarray:
        return np.abs(sfft.rfft(x[st[:, None] + grid] * w, axis=1))

    ref = mag(real, starts)
    fl = ref.max() * 10 ** (floor_db / 20)
    ref = np.log(ref + fl)
    cache: dict[int, float] = {}

    def dist(k: int) -> float:
        if k not in cache:
            cache[k] = float(np.mean(np.abs(ref - np.log(mag(spoof, starts + k) + fl))))
        return cache[k]

    best, a, b = center, lo, hi
    for step in steps:
        best = min(range(a, b + 1, step), key=dist)
        a, b = max(lo, best - step), min(hi, best + step)
    if lo < best < hi:
        a, b, c = dist(best - 1), dist(best), dist(best + 1)
        if a - 2 * b + c > 0:
            return best + 0.5 * (a - c) / (a - 2 * b + c)
    return float(best)


def intrinsic_delay(real: np.ndarray, vocoded: np.ndarray, radius: int = 96) -> int:
    """A phase-free vocoder's delay on one utterance (samples), measured on its output before any framing effect."""
    d = logmag_offset(real, vocoded, radius=radius)
    if abs(d) >= radius:
        raise RuntimeError(f"vocoder delay not found within +-{radius} samples: the vocoded signal does not match its input")
    return int(round(d))


def lag(voc: Vocoder, real: np.ndarray, out: np.ndarray, sr: int) -> int:
    """The lag of ``out`` (``voc``'s output) against ``real``: exact for codecs, spectral for the others."""
    if voc.keeps_phase:
        return xcorr_lag(real, out, max_lag=int(0.25 * sr))
    return intrinsic_delay(real, out, radius=max(96, int(0.01 * sr)))


# ------------------------------------------------------------------------------------------- specs


def _callable(name: str, target: str) -> WaveFn:
    """``module:function`` imported now (a bad spec fails before any work), wrapped to the built-ins' signature."""
    module, _, attr = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise VocoderError(f"vocoder {target!r} cannot be imported ({type(e).__name__}: {e}); "
                           "give module:function with the module on PYTHONPATH") from None
    if not callable(fn):
        raise VocoderError(f"vocoder {target!r} is not callable: give module:function(wave, sr) -> wave")
    return partial(_call_user, fn)


def _call_user(fn: Callable[[np.ndarray, int], np.ndarray], x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    y = np.asarray(fn(x.copy(), sr), dtype=np.float64)
    return y.mean(axis=1) if y.ndim == 2 else y


def parse(spec: str) -> Vocoder:
    """A ``--vocoders`` entry as a :class:`Vocoder` (raises a one-line :class:`VocoderError`)."""
    spec = spec.strip()
    name, _, target = spec.rpartition("=")
    if ":" in target:
        name = name or target.partition(":")[2]
        if not NAME_RE.match(name) or name == "gt":
            raise VocoderError(f"vocoder folder name {name!r} (from {spec!r}) must be letters, digits, '.', '-' and not 'gt'")
        return Vocoder(name, spec, _callable(name, target), keeps_phase=False)
    if name:
        raise VocoderError(f"vocoder {spec!r}: name=... only applies to a module:function callable")
    base, _, level = target.partition("@")
    if base not in BUILTIN:
        raise VocoderError(f"unknown vocoder {base!r}: choose from {', '.join(BUILTIN)}, or give module:function")
    if base in CODEC_LEVELS:
        try:
            q = float(level) if level else CODEC_LEVELS[base]
        except ValueError:
            q = -1.0
        if not 0.0 <= q < 1.0:
            raise VocoderError(f"vocoder {spec!r}: the compression level after '@' must be in [0, 1), e.g. {base}@0.9")
        return Vocoder(base, spec, partial(codec, kind=base, level=q), keeps_phase=True)
    if level:
        raise VocoderError(f"vocoder {spec!r}: only mp3 and opus take an @level")
    return Vocoder(base, spec, {"world": world, "griffinlim": griffinlim, "lpc": lpc}[base], keeps_phase=False)


def parse_all(specs: list[str] | tuple[str, ...], sample_rate: int) -> list[Vocoder]:
    """Parse every spec; folder names must be distinct and codecs must accept ``sample_rate``."""
    vocs = [parse(s) for s in specs]
    if not vocs:
        raise VocoderError("no vocoders given: pass e.g. --vocoders world,griffinlim,mp3,opus")
    names = [v.name for v in vocs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise VocoderError(f"two vocoders would write the same folder {dup[0]!r}: give one a name with name=module:function")
    for v in vocs:
        rates = CODEC_RATES.get(v.spec.partition("@")[0])
        if rates and sample_rate not in rates:
            raise VocoderError(f"{v.name} cannot encode at {sample_rate} Hz: use --sample-rate one of {', '.join(map(str, rates))}")
    return vocs
