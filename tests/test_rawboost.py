"""Matched RawBoost: the pair gets one distortion (exact difference properties), replays bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from annotate.core import rawboost as rb

SR = 16000
N = SR  # 1 s keeps the suite fast


def _pair(seed: int = 0, amp: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """A speech-like real signal and a perturbed 'spoof', both on the 16-bit PCM grid (as decoded audio is)."""
    rng = np.random.default_rng(seed)
    t = np.arange(N) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    real = env * sum(np.sin(k * phase) / k for k in range(1, 15)) / 3
    real = amp * real / np.max(np.abs(real)) + 0.003 * rng.standard_normal(N)
    spoof = real + 0.02 * amp * rng.standard_normal(N) + 0.05 * amp * np.sin(2 * np.pi * 3000 * t)
    q = lambda x: (np.round(x * 32768) / 32768).astype(np.float32)  # noqa: E731
    return q(real), q(spoof)


def _aug_with(params: rb.RawBoostParams, real: np.ndarray, spoof: np.ndarray):
    scales = rb.compute_scales(real, params, spoof)
    return rb.apply(real, params, scales=scales), rb.apply(spoof, params, scales=scales), scales


def _unmatched(algo: int, real, spoof, cfg=rb.RawBoostConfig()):
    """What an unmatched implementation does: an independent draw and own scales per signal."""
    pr = rb.draw(algo, N, SR, np.random.default_rng(1), cfg)
    ps = rb.draw(algo, N, SR, np.random.default_rng(2), cfg)
    ur = rb.apply(real, pr, scales=rb.compute_scales(real, pr))
    return ur, rb.apply(spoof, ps, scales=rb.compute_scales(spoof, ps)), pr


def test_ssi_difference_is_exact():
    real, spoof = _pair()
    r2, s2 = rb.augment_pair(real, spoof, 3, seed=11, sr=SR)
    assert not np.array_equal(r2, real)  # noise was added
    assert np.array_equal(s2 - r2, spoof - real)  # bit-exact in float32
    assert np.array_equal(s2.astype(np.float64) - r2, spoof.astype(np.float64) - real)
    # SNR of the added noise is the drawn one, measured on the real
    params = rb.draw(3, N, SR, np.random.default_rng(11), rb.RawBoostConfig())
    noise = r2.astype(np.float64) - real
    snr = 20 * np.log10(np.linalg.norm(real) / np.linalg.norm(noise))
    assert abs(snr - params.ssi.snr_db) < 0.01
    # an unmatched implementation breaks the property by far
    ur, us, _ = _unmatched(3, real, spoof)
    assert np.max(np.abs((us - ur) - (spoof - real))) > 1e-3


def test_lnl_order1_difference_is_filtered_difference():
    cfg = rb.RawBoostConfig(n_f=1)
    real, spoof = _pair()
    r2, s2 = rb.augment_pair(real, spoof, 1, seed=5, sr=SR, cfg=cfg)
    params = rb.draw(1, N, SR, np.random.default_rng(5), cfg)
    c = rb.compute_scales(real, params, spoof).divisors[0]
    h = params.lnl.filters[0]
    d = spoof.astype(np.float64) - real
    expect = signal.oaconvolve(d, h)[(h.size - 1) // 2 :][:N] / c
    got = s2.astype(np.float64) - r2
    np.testing.assert_allclose(got, expect, rtol=0, atol=2e-7)
    assert np.max(np.abs(got - d)) > 1e-3  # the filter did something to the difference
    ur, us, pr = _unmatched(1, real, spoof, cfg)
    h1 = pr.lnl.filters[0]
    expect_u = signal.oaconvolve(d, h1)[(h1.size - 1) // 2 :][:N]
    assert np.max(np.abs((us.astype(np.float64) - ur) - expect_u)) > 1e-3


def test_lnl_nonlinear_orders_use_the_same_filters():
    real, spoof = _pair()
    r2, s2 = rb.augment_pair(real, spoof, 1, seed=8, sr=SR)
    params = rb.draw(1, N, SR, np.random.default_rng(8), rb.RawBoostConfig())
    assert len(params.lnl.filters) == 5 and params.lnl.gains_db[0] == 0.0
    assert all(-20 <= g <= -5 for g in params.lnl.gains_db[1:])
    for b, g in zip(params.lnl.filters, params.lnl.gains_db):  # peak response is the drawn gain
        _, h = signal.freqz(b, 1, worN=512, fs=SR)
        assert np.max(np.abs(h)) == pytest.approx(10 ** (g / 20), rel=1e-9)
    c = rb.compute_scales(real, params, spoof).divisors[0]
    s64, r64 = spoof.astype(np.float64), real.astype(np.float64)
    expect = sum(
        signal.oaconvolve(s64**k - r64**k, b)[(b.size - 1) // 2 :][:N] for k, b in enumerate(params.lnl.filters, 1)
    ) / c
    np.testing.assert_allclose(s2.astype(np.float64) - r2, expect, rtol=0, atol=2e-7)


def test_isd_is_a_shared_diagonal_map():
    real, spoof = _pair()
    r2, s2 = rb.augment_pair(real, spoof, 2, seed=3, sr=SR)
    p = rb.draw(2, N, SR, np.random.default_rng(3), rb.RawBoostConfig()).isd
    assert 0 <= p.beta <= 10 and p.positions.size == int(N * p.beta / 100)
    assert np.all(np.abs(p.factors) <= 1)
    gain = np.ones(N)
    gain[p.positions] += 2.0 * p.factors
    d = spoof.astype(np.float64) - real
    c = rb.compute_scales(real, rb.draw(2, N, SR, np.random.default_rng(3)), spoof).divisors[0]
    np.testing.assert_allclose(s2.astype(np.float64) - r2, gain * d / c, rtol=0, atol=2e-7)
    untouched = np.setdiff1d(np.arange(N), p.positions)
    np.testing.assert_allclose(r2[untouched], real[untouched] / c, atol=1e-7)


@pytest.mark.parametrize("amp", [0.4, 0.95])
@pytest.mark.parametrize("algo", range(1, 9))
def test_linear_config_is_affine_with_shared_linear_part(algo, amp):
    """With N_f = 1 every algorithm is affine given (params, scales): diff == L(s - r).

    At amp 0.95 ISD pushes peaks past 1, so the shared peak divisor is exercised too.
    """
    cfg = rb.RawBoostConfig(n_f=1)
    real, spoof = _pair(1, amp=amp)
    params = rb.draw(algo, N, SR, np.random.default_rng(100 + algo), cfg)
    r2, s2, scales = _aug_with(params, real, spoof)
    if amp > 0.9 and algo in (2, 4, 5, 7, 8):
        assert max(scales.divisors) > 1.0
    lin = rb.Scales(noise_scale=0.0, dc=0.0, divisors=scales.divisors)
    d = spoof.astype(np.float64) - real
    expect = rb.apply(d, params, scales=lin).astype(np.float64)
    np.testing.assert_allclose(s2.astype(np.float64) - r2, expect, rtol=0, atol=5e-7)


@pytest.mark.parametrize("algo", range(0, 9))
def test_every_algorithm_runs_and_replays_bit_for_bit(algo):
    real, spoof = _pair(2, amp=0.95)
    seed = rb.pair_seed(7, f"melgan__utt{algo}")
    r2, s2 = rb.augment_pair(real, spoof, algo, seed, SR)
    for y in (r2, s2):
        assert y.dtype == np.float32 and y.shape == (N,) and np.isfinite(y).all()
    if algo in (1, 2, 5, 8):  # the pair divisor keeps both within [-1, 1] (no clipping on FLAC write)
        assert max(np.abs(r2).max(), np.abs(s2).max()) <= 1.0
    if algo:
        assert not np.array_equal(r2, real) and not np.array_equal(s2, spoof)
    r3, s3 = rb.augment_pair(real, spoof, algo, seed, SR)
    assert np.array_equal(r2, r3) and np.array_equal(s2, s3)
    # replaying from explicit params + scales, one signal at a time, gives the same bits
    if algo:
        params = rb.draw(algo, N, SR, np.random.default_rng(seed), rb.RawBoostConfig())
        r4, s4, _ = _aug_with(params, real, spoof)
        assert np.array_equal(r2, r4) and np.array_equal(s2, s4)
        other = rb.augment_pair(real, spoof, algo, seed + 1, SR)
        assert not np.array_equal(other[0], r2)


def test_pair_seed_is_stable_and_distinguishes_pairs():
    a = rb.pair_seed(0, "hifigan__LA_T_1138215")
    assert a == rb.pair_seed(0, "hifigan__LA_T_1138215") and 0 <= a < 2**63
    assert len({a, rb.pair_seed(0, "waveglow__LA_T_1138215"), rb.pair_seed(1, "hifigan__LA_T_1138215"),
                rb.pair_seed(0, "hifigan__LA_T_1138215", copy=1)}) == 4
    assert a == 0x7FFFFFFFFFFFFFFF & a  # plain int, fits int64
    cfg = rb.RawBoostConfig()
    p1 = rb.draw(4, N, SR, np.random.default_rng(a), cfg)
    p2 = rb.draw(4, N, SR, np.random.default_rng(rb.pair_seed(0, "waveglow__LA_T_1138215")), cfg)
    assert not np.array_equal(p1.ssi.noise, p2.ssi.noise)
    assert p1.lnl.filters[0].size != p2.lnl.filters[0].size or not np.allclose(p1.lnl.filters[0], p2.lnl.filters[0])
    assert p1.summary() != p2.summary()


def test_should_augment_rate_and_edges():
    hits = [rb.should_augment(rb.pair_seed(3, f"p{i}"), 0.5) for i in range(2000)]
    assert 0.45 < np.mean(hits) < 0.55
    assert not any(rb.should_augment(s, 0.0) for s in range(50))
    assert all(rb.should_augment(s, 1.0) for s in range(50))
    with pytest.raises(ValueError, match="outside"):
        rb.should_augment(1, 1.5)


def test_real_reference_matches_plain_rawboost_on_the_real():
    real, spoof = _pair(4, amp=0.95)
    cfg = rb.RawBoostConfig(norm_reference="real")
    r2, s2 = rb.augment_pair(real, spoof, 5, seed=21, sr=SR, cfg=cfg)
    assert np.array_equal(r2, rb.augment(real, 5, seed=21, sr=SR, cfg=cfg))
    assert np.abs(r2).max() <= 1.0


def test_config_and_errors():
    cfg = rb.RawBoostConfig()
    d = cfg.to_dict()
    assert rb.RawBoostConfig(**d) == cfg
    assert (d["n_f"], d["n_bands"], d["min_g"], d["max_g"], d["p"], d["g_sd"], d["snr_min"], d["snr_max"]) == (
        5, 5, 0.0, 0.0, 10.0, 2.0, 10.0, 40.0)
    assert (d["min_bias_lin_nonlin"], d["max_bias_lin_nonlin"], d["min_coeff"], d["max_coeff"]) == (5.0, 20.0, 10, 100)
    real, spoof = _pair()
    with pytest.raises(ValueError, match="equal length"):
        rb.augment_pair(real, spoof[:-1], 3, 0, SR)
    bad = real.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rb.augment_pair(bad, spoof, 1, 0, SR)
    with pytest.raises(ValueError, match="unknown RawBoost algorithm 9"):
        rb.augment_pair(real, spoof, 9, 0, SR)
    with pytest.raises(ValueError, match="norm_reference"):
        rb.RawBoostConfig(norm_reference="spoof")
    params = rb.draw(3, N, SR, np.random.default_rng(0), cfg)
    with pytest.raises(ValueError, match="expected"):
        rb.apply(real[:100], params, scales=rb.compute_scales(real, params))
