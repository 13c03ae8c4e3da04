"""Audio I/O: decode with soundfile (its header gives the rate), check, resample with soxr, encode FLAC
with soundfile (libsndfile's encoder)."""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr


class AudioError(Exception):
    """A file that cannot become a clean mono signal; the message is the reject reason."""


def _read(path: str) -> tuple[np.ndarray, int]:
    """``sf.read(path, dtype="float32", always_2d=True)``, bit for bit. 16-bit PCM (most corpora) is read
    as int16 and scaled here by 2**-15, as libsndfile does, which is cheaper than its float path."""
    with sf.SoundFile(path) as f:
        if f.subtype != "PCM_16":
            return f.read(dtype="float32", always_2d=True), f.samplerate
        x = f.read(dtype="int16", always_2d=True).astype(np.float32)
    x *= np.float32(1.0 / 32768.0)
    return x, f.samplerate


def load(path: str, target_sr: int, *, resample_quality: str = "HQ", min_sr: int = 8000,
         mixdown: bool = False) -> tuple[np.ndarray, int]:
    """Decode ``path`` as float32 mono at ``target_sr``; returns ``(signal, original_rate)``.

    Rejects (``AudioError``, message ``"<kind>: <detail>"``): unreadable or empty files, more than one
    channel (unless ``mixdown``: then the channels are averaged), non-finite samples, a header rate below
    ``min_sr`` (too little bandwidth to annotate).
    """
    try:
        x, sr = _read(path)
    except Exception as e:  # soundfile raises several types for corrupt headers
        msg = str(e).splitlines()[0][:120] if str(e) else ""
        raise AudioError(f"unreadable audio: {type(e).__name__} {msg}".rstrip()) from None
    if x.shape[1] != 1 and mixdown:
        x = x.mean(axis=1, keepdims=True)
    if x.shape[1] != 1:
        raise AudioError(f"not mono: {x.shape[1]} channels (convert to mono first)")
    x = x[:, 0]
    if x.size == 0:
        raise AudioError("empty audio: 0 samples")
    if not np.isfinite(x).all():
        raise AudioError(f"non-finite samples: {int((~np.isfinite(x)).sum())} NaN/inf values")
    if sr < min_sr:
        raise AudioError(f"sample rate too low: {sr} Hz in the header, minimum {min_sr} Hz")
    if sr != target_sr:
        x = soxr.resample(x, sr, target_sr, quality=resample_quality).astype(np.float32, copy=False)
    return x, int(sr)


def encode_flac(x: np.ndarray, sr: int) -> bytes:
    """16-bit FLAC bytes of a float signal (clipped to [-1, 1]), quantised as libsndfile would
    (round(x * 32768), saturating)."""
    y = np.multiply(x, np.float32(32768.0), dtype=np.float32)
    np.rint(y, out=y)
    pcm = np.clip(y, -32768, 32767, out=y).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode FLAC/WAV bytes (as stored in the dataset's audio columns) to float32 mono."""
    x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return x[:, 0], int(sr)
