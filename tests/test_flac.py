"""annotate.flac: every stream decodes (with libsndfile's libFLAC) to exactly the samples encoded."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from annotate import flac


def _roundtrip(pcm: np.ndarray, sr: int = 16000) -> bytes:
    data = flac.encode(pcm, sr)
    with sf.SoundFile(io.BytesIO(data)) as f:
        assert (f.format, f.subtype, f.channels, f.samplerate, f.frames) == ("FLAC", "PCM_16", 1, sr, len(pcm))
        y = f.read(dtype="int16")
    np.testing.assert_array_equal(y, pcm)
    return data


def _signals(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = np.arange(n)
    spikes = np.zeros(n, np.int16)
    spikes[::97], spikes[5::131] = 32767, -32768  # long unary runs in quiet partitions
    return {
        "speech-like": (np.sin(t * 0.03) * np.sin(t * 0.0011) * 9000 + rng.normal(0, 40, n)).astype(np.int16),
        "white noise": rng.integers(-32768, 32768, n).astype(np.int16),  # incompressible: verbatim frames
        "silence": np.zeros(n, np.int16),  # constant frames
        "most negative": np.full(n, -32768, np.int16),
        "alternating full scale": np.where(t % 2 == 0, 32767, -32768).astype(np.int16),
        "quiet noise": rng.normal(0, 3, n).astype(np.int16),
        "spikes in silence": spikes,
        "ramp": (t % 65536 - 32768).astype(np.int16),  # order-1/2 predictors are exact here
    }


@pytest.mark.parametrize("n", [1, 2, 4, 5, 16, 17, 255, 256, 257, 1023, 1024, 1025, 3 * 1024, 50_000])
def test_roundtrip_lengths_and_kinds(n):
    for name, pcm in _signals(n, np.random.default_rng(n)).items():
        _roundtrip(pcm)


@pytest.mark.parametrize("sr", [8000, 11025, 12345, 16000, 22050, 24000, 44100, 48000, 96000, 192000])
def test_roundtrip_sample_rates(sr):
    """Common rates have a frame-header code; others (12345) are read from STREAMINFO."""
    _roundtrip((np.random.default_rng(sr).normal(0, 2000, 5000)).astype(np.int16), sr)


def test_long_stream_frame_numbers():
    """Frame numbers past 127 and 2047 take two and three bytes in the frame header."""
    n = 2100 * flac.BLOCK + 77
    t = np.arange(n)
    _roundtrip(((np.sin(t * 0.002) * 12000) + (t % 7) * 3).astype(np.int16))


def test_size_close_to_libsndfile_on_demo_speech(demo_corpus):
    """Same family of predictors as libFLAC's fast levels, so about the same size (measured here: 0.99x)."""
    ratios = []
    for path in sorted(demo_corpus.rglob("*.wav"))[:12]:  # reals and their vocoded versions
        pcm, sr = sf.read(path, dtype="int16")
        ref = io.BytesIO()
        sf.write(ref, pcm, sr, format="FLAC", subtype="PCM_16", compression_level=0.0)
        ratios.append(len(_roundtrip(pcm, sr)) / len(ref.getvalue()))
    assert 0.9 < np.mean(ratios) < 1.1, ratios


def test_bad_input():
    with pytest.raises(ValueError, match="mono"):
        flac.encode(np.zeros((10, 2), np.int16), 16000)
    with pytest.raises(ValueError, match="sample rate"):
        flac.encode(np.zeros(10, np.int16), 0)
