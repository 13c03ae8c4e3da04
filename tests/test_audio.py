"""annotate.core.audio.encode_flac: libsndfile's FLAC holds exactly the 16-bit samples of the signal."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from annotate.core.audio import decode_bytes, encode_flac


@pytest.mark.parametrize("n", [1, 5, 1023, 1024, 1025, 50_000])
def test_flac_holds_the_quantised_samples(n):
    rng = np.random.default_rng(n)
    t = np.arange(n)
    signals = {
        "speech-like": 0.3 * np.sin(t * 0.03) * np.sin(t * 0.0011) + rng.normal(0, 1e-3, n),
        "white noise": rng.uniform(-1, 1, n),
        "silence": np.zeros(n),
        "clipped": np.full(n, 1.5),  # saturates at full scale
    }
    for name, x in signals.items():
        data = encode_flac(x.astype(np.float32), 16000)
        with sf.SoundFile(io.BytesIO(data)) as f:
            assert (f.format, f.subtype, f.channels, f.samplerate, f.frames) == ("FLAC", "PCM_16", 1, 16000, n), name
            got = f.read(dtype="int16")
        want = np.clip(np.rint(x.astype(np.float32) * np.float32(32768.0)), -32768, 32767).astype(np.int16)
        np.testing.assert_array_equal(got, want, err_msg=name)
        y, sr = decode_bytes(data)
        assert sr == 16000 and np.array_equal(y, want / 32768.0), name
