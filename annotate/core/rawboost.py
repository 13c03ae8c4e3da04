"""Matched RawBoost (Tak et al., ICASSP 2022): one drawn parameter set applied to both signals of a pair.

RawBoost distorts a waveform with (1) LnL, linear and non-linear convolutive noise: for orders
k = 1..N_f the signal's k-th power goes through its own cascade of ``n_bands`` FIR notch filters
(order 1 at 0 dB, higher orders at U(-20, -5) dB), the outputs are summed, de-meaned and normalised;
(2) ISD, impulsive signal-dependent noise: U(0, P)% of the samples become x + g_sd·x·u1·u2 with
u1, u2 ~ U(-1, 1); (3) SSI, stationary coloured additive noise: white noise through a notch cascade,
added at SNR ~ U(10, 40) dB. Algorithms 4 = 1→2→3, 5 = 1→2, 6 = 1→3, 7 = 2→3 run in series and
8 = normalise(1(x) + 2(x)) in parallel; 0 = none.

Here *drawing* is split from *applying* so that the real and the spoof of a pair get the same
distortion: :func:`draw` returns ONE explicit :class:`RawBoostParams` (FIR taps per order, ISD
positions and factors, the unit-norm coloured noise, gains, SNR) from a generator seeded by
:func:`pair_seed` (global seed, pair id); :func:`compute_scales` fixes the few signal-dependent numbers
once for the pair — the LnL DC offset (the real's), the peak normalisation divisors (the pair's) and
the SSI noise scale (``‖real‖₂ / 10^(SNR/20)`` at the SSI stage input) — and :func:`apply` replays
params + scales on one signal deterministically, bit for bit.

Properties that hold for a matched pair (r, s) with ``(r', s') = augment_pair(r, s, ...)``:

* SSI (algo 3): the same absolute noise array is added to both, so ``s' - r' == s - r``. The noise is
  rounded to multiples of 2⁻²⁴, so for inputs on that grid (any PCM-decoded audio) with |x + noise| < 1
  the sums are exact in float32 and the equality is bit-exact; otherwise it holds to one float32 ulp.
* ISD (algo 2): positions and factors are shared and each multiplies the signal's own samples, so ISD
  is one diagonal linear map D and ``s' - r' == D(s - r) / c`` (c the shared divisor).
* LnL (algo 1): the same filters h_k for both. Order 1 is linear: with N_f = 1,
  ``s' - r' == (h_1 * (s - r)) / c`` (the DC offset cancels because it is the same constant). Orders
  k ≥ 2 act on x^k, so in general ``s' - r' == Σ_k h_k * (s^k - r^k) / c``: the same non-linear
  operator, but not a function of s - r alone.
* Every algorithm with N_f = 1 is affine in the signal given (params, scales), so
  ``s' - r' == L(s - r)`` with L = :func:`apply` at zero noise scale and zero DC (tested).

Normalisation: the original divides by max|y| whenever it exceeds 1 (after LnL, after ISD and after
the parallel sum of algo 8). Dividing each signal by its own peak would break the pair's matching, so
one divisor ``max(1, peak)`` is used for both, where the peak is taken over BOTH signals by default
(``norm_reference="pair"``: neither signal exceeds ±1, so nothing is clipped when encoded to 16-bit
FLAC) or over the real alone (``"real"``: the real is augmented exactly as RawBoost alone would).

Differences from the public reference code, all deliberate: filters are aligned at their exact
linear-phase delay (the reference drops one sample more); U(a, b) draws order their bounds; the SSI
noise is quantised to 2⁻²⁴ as above. Work is float64 inside, float32 out.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

ALGORITHMS = {
    0: (),
    1: ("lnl",),
    2: ("isd",),
    3: ("ssi",),
    4: ("lnl", "isd", "ssi"),
    5: ("lnl", "isd"),
    6: ("lnl", "ssi"),
    7: ("isd", "ssi"),
    8: ("lnl", "isd"),  # in parallel: normalise(LnL(x) + ISD(x))
}
NOISE_GRID = 2.0**-24  # SSI noise is rounded to this grid so x + noise is exact for PCM-grid float32 x


@dataclass(frozen=True)
class RawBoostConfig:
    """RawBoost hyper-parameters; defaults are those of the original release (Tak et al. 2022)."""

    n_f: int = 5  # LnL orders (1 = linear only)
    n_bands: int = 5  # notch filters per cascade
    min_f: float = 20.0  # notch centre frequency range, Hz
    max_f: float = 8000.0
    min_bw: float = 100.0  # notch bandwidth range, Hz
    max_bw: float = 1000.0
    min_coeff: int = 10  # FIR taps range per notch (made odd)
    max_coeff: int = 100
    min_g: float = 0.0  # linear (order-1) gain range, dB
    max_g: float = 0.0
    min_bias_lin_nonlin: float = 5.0  # non-linear orders: gain U(min_g - max_bias, max_g - min_bias)
    max_bias_lin_nonlin: float = 20.0
    p: float = 10.0  # ISD: at most p % of the samples
    g_sd: float = 2.0  # ISD gain
    snr_min: float = 10.0  # SSI SNR range, dB
    snr_max: float = 40.0
    norm_reference: str = "pair"  # "pair" (shared divisor from both peaks) or "real" (from the real's)

    def __post_init__(self) -> None:
        if self.norm_reference not in ("pair", "real"):
            raise ValueError(f"RawBoostConfig.norm_reference={self.norm_reference!r}; use 'pair' or 'real'")
        if self.n_f < 1 or self.n_bands < 1 or self.min_coeff < 1 or self.max_coeff < self.min_coeff:
            raise ValueError(f"RawBoostConfig: need n_f, n_bands >= 1 and 1 <= min_coeff <= max_coeff ({self})")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LnLParams:
    """LnL: FIR taps (gain included) for orders 1..N_f, and the gains in dB."""

    filters: tuple[np.ndarray, ...]
    gains_db: tuple[float, ...]


@dataclass(frozen=True)
class ISDParams:
    """ISD: the chosen sample positions and their factors u1·u2 (each in [-1, 1])."""

    beta: float  # percent of samples
    positions: np.ndarray
    factors: np.ndarray
    g_sd: float


@dataclass(frozen=True)
class SSIParams:
    """SSI: the notch cascade, the coloured noise it made (unit L2 norm, before SNR scaling), the SNR."""

    filter: np.ndarray
    noise: np.ndarray
    snr_db: float


@dataclass(frozen=True)
class RawBoostParams:
    """One explicit RawBoost draw for signals of ``n_samples`` samples."""

    algo: int
    n_samples: int
    sr: int
    lnl: LnLParams | None = None
    isd: ISDParams | None = None
    ssi: SSIParams | None = None

    def summary(self) -> dict:
        """Scalars worth logging (the seed, not this, is what replays the augmentation)."""
        out: dict = {"algo": self.algo, "n_samples": self.n_samples}
        if self.lnl is not None:
            out["lnl_gains_db"] = [round(g, 3) for g in self.lnl.gains_db]
            out["lnl_taps"] = [int(b.size) for b in self.lnl.filters]
        if self.isd is not None:
            out["isd_beta"] = round(self.isd.beta, 4)
            out["isd_count"] = int(self.isd.positions.size)
        if self.ssi is not None:
            out["ssi_snr_db"] = round(self.ssi.snr_db, 3)
        return out


@dataclass(frozen=True)
class Scales:
    """The signal-dependent numbers fixed once per pair: SSI noise scale, LnL DC offset, peak divisors."""

    noise_scale: float = 0.0
    dc: float = 0.0
    divisors: tuple[float, ...] = field(default_factory=tuple)


def pair_seed(global_seed: int, pair_id: str, copy: int = 0) -> int:
    """Stable 63-bit seed for (global seed, pair id, augmentation copy); hashlib, so the same on every run."""
    key = f"{int(global_seed)}\x1f{pair_id}\x1f{int(copy)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def should_augment(seed: int, prob: float) -> bool:
    """Whether a pair is augmented (probability ``prob``), from a stream independent of :func:`draw`'s."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"RawBoost probability {prob} is outside [0, 1]")
    if prob in (0.0, 1.0):  # no draw needed, so no generator is made
        return prob == 1.0
    return bool(np.random.default_rng([int(seed), 0x5EED]).random() < prob)


# ---------------------------------------------------------------- drawing


def _uniform(rng: np.random.Generator, a: float, b: float) -> float:
    lo, hi = (a, b) if a <= b else (b, a)
    return float(rng.uniform(lo, hi))


def _notch_cascade(
    rng: np.random.Generator, cfg: RawBoostConfig, sr: int, min_g: float, max_g: float
) -> tuple[np.ndarray, float]:
    """Cascade of ``n_bands`` random FIR band-stop filters scaled to a peak response of G dB; (taps, G)."""
    nyq = sr / 2.0
    b = np.ones(1)
    for _ in range(cfg.n_bands):
        fc = _uniform(rng, cfg.min_f, cfg.max_f)
        bw = _uniform(rng, cfg.min_bw, cfg.max_bw)
        taps = int(_uniform(rng, cfg.min_coeff, cfg.max_coeff))
        taps += 1 - taps % 2  # band-stop FIRs need an odd length
        f1 = max(fc - bw / 2.0, 1e-3)
        f2 = min(fc + bw / 2.0, nyq - 1e-3)
        if f1 >= f2:
            raise ValueError(
                f"RawBoost notch {f1:.1f}-{f2:.1f} Hz is empty at {sr} Hz; lower min_f/max_f for this rate"
            )
        b = np.convolve(_signal().firwin(taps, [f1, f2], window="hamming", fs=sr), b)
    gain_db = _uniform(rng, min_g, max_g)
    _, h = _signal().freqz(b, 1, worN=512, fs=sr)
    return (10.0 ** (gain_db / 20.0)) * b / np.max(np.abs(h)), gain_db


def _draw_lnl(rng: np.random.Generator, sr: int, cfg: RawBoostConfig) -> LnLParams:
    filters, gains = [], []
    for k in range(cfg.n_f):
        if k == 0:
            lo, hi = cfg.min_g, cfg.max_g
        else:
            lo, hi = cfg.min_g - cfg.max_bias_lin_nonlin, cfg.max_g - cfg.min_bias_lin_nonlin
        b, g = _notch_cascade(rng, cfg, sr, lo, hi)
        filters.append(b)
        gains.append(g)
    return LnLParams(tuple(filters), tuple(gains))


def _draw_isd(rng: np.random.Generator, n: int, cfg: RawBoostConfig) -> ISDParams:
    beta = _uniform(rng, 0.0, cfg.p)
    count = int(n * beta / 100.0)
    positions = np.sort(rng.permutation(n)[:count])
    factors = (2.0 * rng.random(count) - 1.0) * (2.0 * rng.random(count) - 1.0)
    return ISDParams(beta, positions, factors, float(cfg.g_sd))


def _draw_ssi(rng: np.random.Generator, n: int, sr: int, cfg: RawBoostConfig) -> SSIParams:
    white = rng.standard_normal(n)
    b, _ = _notch_cascade(rng, cfg, sr, cfg.min_g, cfg.max_g)
    noise = _fir_same(white, b)
    norm = _l2(noise)
    noise = noise / norm if norm > 0 else noise
    snr = _uniform(rng, cfg.snr_min, cfg.snr_max)
    return SSIParams(b, noise, snr)


def draw(
    algo: int, n_samples: int, sr: int, rng: np.random.Generator, cfg: RawBoostConfig | None = None
) -> RawBoostParams:
    """Draw ONE explicit parameter set for ``algo`` (0-8) and signals of ``n_samples`` samples at ``sr``."""
    cfg = cfg or RawBoostConfig()
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown RawBoost algorithm {algo}; use 0 (none) or 1-8")
    if n_samples < 1:
        raise ValueError(f"RawBoost needs a non-empty signal (got {n_samples} samples)")
    stages = ALGORITHMS[algo]
    lnl = _draw_lnl(rng, sr, cfg) if "lnl" in stages else None
    isd = _draw_isd(rng, n_samples, cfg) if "isd" in stages else None
    ssi = _draw_ssi(rng, n_samples, sr, cfg) if "ssi" in stages else None
    return RawBoostParams(algo, n_samples, sr, lnl, isd, ssi)


# ---------------------------------------------------------------- applying


def _signal():
    """scipy.signal, imported on first use, so build workers that never augment do not import it."""
    from scipy import signal

    return signal


def _l2(x: np.ndarray) -> float:
    """L2 norm by numpy's own (single-threaded, pairwise) sum: BLAS dot can change bits with its thread count."""
    return float(np.sqrt(np.sum(x * x)))


def _fir_same(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """FIR filter ``x`` with linear-phase taps ``b`` (odd length), compensating the (len-1)/2 delay."""
    d = (b.size - 1) // 2
    return _signal().oaconvolve(x, b, mode="full")[d : d + x.size]


def _lnl_sum(x: np.ndarray, filters: tuple[np.ndarray, ...]) -> np.ndarray:
    """Σ_k h_k * x^k with delay compensation, summed in the frequency domain (one inverse FFT)."""
    from scipy import fft as sfft  # imported on first use, like scipy.signal

    taps = max(b.size for b in filters)
    nfft = sfft.next_fast_len(x.size + taps - 1, real=True)
    acc = np.zeros(nfft // 2 + 1, dtype=np.complex128)
    xk = x
    for k, b in enumerate(filters):
        if k:
            xk = xk * x
        pad = (taps - b.size) // 2  # centre every (odd-length) filter on the common delay (taps - 1) / 2
        acc += sfft.rfft(xk, nfft) * sfft.rfft(np.pad(b, (pad, pad)), nfft)
    d = (taps - 1) // 2
    return sfft.irfft(acc, nfft)[d : d + x.size]


class _Runner:
    """Runs the stages on one or two signals; computes the shared scales from them, or replays given ones."""

    def __init__(self, params: RawBoostParams, fixed: Scales | None, use_all_peaks: bool):
        self.p, self.fixed, self.use_all = params, fixed, use_all_peaks
        self.noise_scale, self.dc, self.divisors = 0.0, 0.0, []

    def _divide(self, ys: list[np.ndarray]) -> list[np.ndarray]:
        i = len(self.divisors)
        if self.fixed is not None:
            c = self.fixed.divisors[i]
        else:
            refs = ys if self.use_all else ys[:1]
            c = max(1.0, max(float(np.max(np.abs(y))) for y in refs))
        self.divisors.append(c)
        return [y / c for y in ys] if c != 1.0 else ys

    def lnl(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        ys = [_lnl_sum(x, self.p.lnl.filters) for x in xs]
        self.dc = self.fixed.dc if self.fixed is not None else float(np.mean(ys[0]))
        return self._divide([y - self.dc for y in ys])

    def isd(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        q = self.p.isd
        ys = []
        for x in xs:
            y = x.copy()
            xp = x[q.positions]
            y[q.positions] = xp + q.g_sd * xp * q.factors
            ys.append(y)
        return self._divide(ys)

    def ssi(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        q = self.p.ssi
        if self.fixed is not None:
            self.noise_scale = self.fixed.noise_scale
        else:
            self.noise_scale = _l2(xs[0]) / 10.0 ** (q.snr_db / 20.0)
        noise = np.round(q.noise * (self.noise_scale / NOISE_GRID)) * NOISE_GRID
        return [x + noise for x in xs]

    def run(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        stages = ALGORITHMS[self.p.algo]
        if self.p.algo == 8:
            a, b = self.lnl(xs), self.isd(xs)
            return self._divide([u + v for u, v in zip(a, b)])
        for name in stages:
            xs = getattr(self, name)(xs)
        return xs

    def scales(self) -> Scales:
        return Scales(self.noise_scale, self.dc, tuple(self.divisors))


def _as_signal(x: np.ndarray, n: int, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1 or x.size != n:
        raise ValueError(f"RawBoost: {what} has shape {x.shape}; expected ({n},) — draw() the params for this length")
    return x.astype(np.float64)


def compute_scales(real: np.ndarray, params: RawBoostParams, spoof: np.ndarray | None = None) -> Scales:
    """The pair's shared scales: noise scale and DC from the real; divisors from both peaks.

    Pass ``spoof`` for ``norm_reference="pair"`` (what :func:`augment_pair` does by default); leave it out
    for ``"real"`` (divisors from the real's peaks alone).
    """
    xs = [_as_signal(real, params.n_samples, "real signal")]
    if spoof is not None:
        xs.append(_as_signal(spoof, params.n_samples, "spoof signal"))
    runner = _Runner(params, None, use_all_peaks=True)
    runner.run(xs)
    return runner.scales()


def compute_noise_scale(real: np.ndarray, params: RawBoostParams, spoof: np.ndarray | None = None) -> float:
    """Absolute scale of the SSI noise, ‖real at the SSI stage‖₂ / 10^(SNR/20); 0 without SSI."""
    return compute_scales(real, params, spoof).noise_scale


def apply(x: np.ndarray, params: RawBoostParams, *, scales: Scales) -> np.ndarray:
    """Apply ``params`` to one signal with the pair's fixed ``scales``; deterministic, float32 out."""
    if params.algo == 0:
        return np.asarray(x, dtype=np.float32).copy()
    xs = [_as_signal(x, params.n_samples, "signal")]
    need = {1: 1, 2: 1, 3: 0, 4: 2, 5: 2, 6: 1, 7: 1, 8: 3}[params.algo]
    if len(scales.divisors) != need:
        raise ValueError(f"RawBoost algo {params.algo} needs {need} divisors, scales has {len(scales.divisors)}")
    return _Runner(params, scales, use_all_peaks=True).run(xs)[0].astype(np.float32)


def augment_pair(
    real: np.ndarray, spoof: np.ndarray, algo: int, seed: int, sr: int, cfg: RawBoostConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Matched RawBoost of an equal-length pair: one draw from ``seed``, one set of scales, both signals."""
    cfg = cfg or RawBoostConfig()
    real, spoof = np.asarray(real), np.asarray(spoof)
    if real.shape != spoof.shape or real.ndim != 1:
        raise ValueError(
            f"RawBoost pair must be 1-D and equal length (real {real.shape}, spoof {spoof.shape}); align first"
        )
    if not (np.isfinite(real).all() and np.isfinite(spoof).all()):
        raise ValueError("RawBoost pair has NaN/inf samples; reject the pair before augmenting")
    if algo == 0:
        return real.astype(np.float32), spoof.astype(np.float32)
    params = draw(algo, real.size, sr, np.random.default_rng(seed), cfg)
    runner = _Runner(params, None, use_all_peaks=cfg.norm_reference == "pair")
    r, s = runner.run([real.astype(np.float64), spoof.astype(np.float64)])
    return r.astype(np.float32), s.astype(np.float32)


def augment(x: np.ndarray, algo: int, seed: int, sr: int, cfg: RawBoostConfig | None = None) -> np.ndarray:
    """Plain (single-signal) RawBoost, e.g. for detector training; same draw as :func:`augment_pair`."""
    cfg = cfg or RawBoostConfig()
    if algo == 0:
        return np.asarray(x, dtype=np.float32).copy()
    params = draw(algo, np.asarray(x).size, sr, np.random.default_rng(seed), cfg)
    return apply(x, params, scales=compute_scales(x, params))
