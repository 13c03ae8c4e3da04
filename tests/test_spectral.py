"""The shared spectral core: perfect reconstruction and the Eq. 2 mask on inputs with a known answer."""
import numpy as np
import pytest
import torch

from annotate.core.spectral import (MaskConfig, STFTConfig, artifact_mask, gaussian_kernel, istft, log_magnitude,
                               relative_difference, stft, threshold)


def test_stft_is_time_first_and_reconstructs_perfectly():
    x = np.random.default_rng(0).standard_normal(16000 + 37).astype(np.float32)
    s = stft(x)
    assert s.shape == (STFTConfig().n_frames(len(x)), 257)
    assert np.abs(istft(s, len(x)) - x).max() < 1e-5


def test_torch_and_numpy_paths_agree_and_batch():
    x = np.random.default_rng(1).standard_normal((2, 4000)).astype(np.float32)
    s_np = stft(x)
    s_t = stft(torch.from_numpy(x))
    assert s_np.shape == (2, 32, 257)
    np.testing.assert_allclose(s_np, s_t.numpy(), atol=1e-6)
    assert torch.allclose(istft(s_t, 4000), torch.from_numpy(x), atol=1e-5)


def test_log_magnitude_inverts_with_exp():
    s = stft(np.random.default_rng(2).standard_normal(8000).astype(np.float32))
    np.testing.assert_allclose(np.exp(log_magnitude(s)), np.abs(s), rtol=1e-5)


def test_gaussian_kernel_defaults():
    k = gaussian_kernel(11, 5.0)
    assert k.shape == (11,) and abs(k.sum() - 1) < 1e-6 and k.argmax() == 5
    np.testing.assert_allclose(k[6] / k[5], np.exp(-1 / 10), rtol=1e-6)
    with pytest.raises(ValueError):
        gaussian_kernel(4, 1.0)


def test_single_pixel_difference_gives_the_kernel_footprint():
    """One spoof pixel differs by a: D is a times the separable kernel, the mask is its 3x11 support."""
    real = np.ones((20, 257), np.float32)
    spoof = real.copy()
    a = 2.0
    spoof[10, 100] += a
    cfg = MaskConfig()
    mask, d = artifact_mask(spoof, real, cfg)
    expected = np.zeros_like(real)
    expected[9:12, 95:106] = 1
    np.testing.assert_array_equal(mask, expected)
    kt, kf = gaussian_kernel(3, 3.0), gaussian_kernel(11, 5.0)
    np.testing.assert_allclose(d[10, 100], a * kt[1] * kf[5] / (1 + cfg.eps), rtol=1e-5)
    np.testing.assert_allclose(d[9, 95], a * kt[0] * kf[0] / (1 + cfg.eps), rtol=1e-5)


def test_difference_is_relative_to_the_real_magnitude():
    """The same absolute change weighs 10x less where the real is 10x louder."""
    real = np.ones((30, 257), np.float32)
    real[:, 128:] = 10.0
    spoof = real + 0.5
    d = relative_difference(spoof, real)
    assert d[15, 50] == pytest.approx(0.5, rel=1e-4)
    assert d[15, 200] == pytest.approx(0.05, rel=1e-4)
    mask = threshold(d, 0.5)
    assert mask[:, :120].all() and not mask[:, 140:].any()


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shapes differ"):
        relative_difference(np.ones((5, 257)), np.ones((6, 257)))


@pytest.mark.parametrize("n", [1, 2, 7, 4095, 4096, 106141])
def test_fast_quantile_is_numpy_quantile_bit_for_bit(n):
    from annotate.core.spectral import quantile

    rng = np.random.default_rng(n)
    for x in (rng.standard_normal(n).astype(np.float32), rng.exponential(size=n).astype(np.float32) ** 3,
              np.round(rng.standard_normal(n) * 2).astype(np.float32)):  # heavy ties
        for q in (0.0, 0.01, 0.5, 0.95, 0.999, 1.0):
            a, b = quantile(x, q), np.quantile(x, q)
            assert a == b and np.asarray(a).dtype == np.asarray(b).dtype


def test_smoothing_matches_scipy_ndimage():
    from scipy import ndimage

    from annotate.core.spectral import smooth

    cfg = MaskConfig()
    m = np.abs(np.random.default_rng(5).standard_normal((2, 101, 257))).astype(np.float32)
    ref = ndimage.convolve1d(ndimage.convolve1d(m.astype(np.float64), gaussian_kernel(3, 3.0), axis=1, mode="nearest"),
                             gaussian_kernel(11, 5.0), axis=2, mode="nearest")
    out = smooth(m, cfg)
    assert out.dtype == np.float32 and out.shape == m.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_spectrogram_of_a_prefix_reuses_frames_exactly():
    from annotate.core.spectral import stft_of_prefix

    rng = np.random.default_rng(6)
    for _ in range(40):
        n = int(rng.integers(2100, 40000))
        x = rng.standard_normal(n).astype(np.float32)
        length = int(rng.integers(1100, n + 1))
        np.testing.assert_array_equal(stft_of_prefix(stft(x), x, length), stft(x[:length]))


def test_flac_quantisation_matches_libsndfile():
    import io

    import soundfile as sf

    from annotate.core.audio import decode_bytes, encode_flac

    x = (np.random.default_rng(7).standard_normal(5000) * 0.4).astype(np.float32)
    x[:6] = [0.5 / 32768, 1.5 / 32768, -0.5 / 32768, 1.0, -1.0, 1.7]
    ref = io.BytesIO()  # libsndfile's own float path
    sf.write(ref, np.clip(x, -1, 1), 16000, format="FLAC", subtype="PCM_16")
    ours, theirs = (sf.read(io.BytesIO(b), dtype="int16") for b in (encode_flac(x, 16000), ref.getvalue()))
    assert ours[1] == theirs[1] == 16000 and np.array_equal(ours[0], theirs[0])
    y, sr = decode_bytes(encode_flac(x, 16000))
    assert sr == 16000 and np.abs(y - np.clip(x, -1, 1)).max() <= 1 / 32768  # +1.0 saturates at 32767


def test_fast_quantile_propagates_nan_like_numpy():
    from annotate.core.spectral import quantile

    x = np.random.default_rng(8).standard_normal(10000).astype(np.float32)
    x[17] = np.nan
    assert np.isnan(quantile(x, 0.95)) and np.isnan(np.quantile(x, 0.95))


def test_pcm16_read_matches_libsndfile_float_path(tmp_path):
    """audio._read scales 16-bit PCM itself (faster): same float32 bits as soundfile's own float read."""
    import soundfile as sf

    from annotate.core.audio import _read

    pcm = np.random.default_rng(9).integers(-32768, 32768, size=(3000, 2)).astype(np.int16)
    pcm[:4] = [[-32768, 32767], [0, 1], [-1, 16384], [12345, -32767]]
    for sub, data in (("PCM_16", pcm), ("PCM_24", pcm), ("FLOAT", pcm / 32768.0)):
        for fmt, ext in (("WAV", "wav"), ("FLAC", "flac")):
            if fmt == "FLAC" and sub == "FLOAT":
                continue
            path = tmp_path / f"x_{sub}.{ext}"
            sf.write(path, data, 22050, format=fmt, subtype=sub)
            ref, sr = sf.read(path, dtype="float32", always_2d=True)
            got, sr2 = _read(str(path))
            assert sr2 == sr == 22050 and got.dtype == np.float32 and got.shape == ref.shape
            np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))

