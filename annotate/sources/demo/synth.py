"""The demo's "real" speech: a Klatt-style source-filter synthesiser (glottal pulses with moving f0, aspiration,
fricatives and stop bursts, formant transitions through cascaded resonators) and its speakers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal
from scipy.ndimage import gaussian_filter1d

from .config import DemoConfig

# Formant targets F1-F4 (Hz) of an adult male vocal tract (Peterson & Barney style averages).
VOWELS = {
    "iy": (270, 2290, 3010, 3600), "ih": (390, 1990, 2550, 3500), "eh": (530, 1840, 2480, 3500),
    "ae": (660, 1720, 2410, 3400), "ah": (520, 1190, 2390, 3400), "aa": (730, 1090, 2440, 3400),
    "ao": (570, 840, 2410, 3300), "uh": (440, 1020, 2240, 3300), "uw": (300, 870, 2240, 3300),
    "er": (490, 1350, 1690, 3300), "ay": (660, 1400, 2450, 3400), "ow": (500, 900, 2350, 3300),
}
# Voiced sonorant consonants: (F1-F4, voicing amplitude, bandwidth multiplier).
SONORANTS = {
    "m": ((280, 1000, 2200, 3300), 0.45, 2.0), "n": ((280, 1650, 2550, 3400), 0.45, 2.0),
    "l": ((360, 1300, 2700, 3400), 0.6, 1.3), "r": ((330, 1100, 1450, 3200), 0.6, 1.2),
    "w": ((300, 650, 2200, 3300), 0.6, 1.2), "y": ((270, 2100, 3000, 3600), 0.6, 1.2),
}
# Fricatives: (noise band centre Hz, band width Hz, level, voiced, F1-F4 locus during the fricative).
FRICATIVES = {
    "s": (5800, 2600, 0.30, False, (300, 1700, 2600, 3500)), "sh": (3200, 1800, 0.35, False, (300, 1900, 2500, 3400)),
    "f": (6500, 5000, 0.10, False, (300, 950, 2300, 3300)), "th": (5500, 4500, 0.08, False, (300, 1500, 2500, 3400)),
    "z": (5800, 2600, 0.18, True, (300, 1700, 2600, 3500)), "v": (6500, 5000, 0.08, True, (300, 950, 2300, 3300)),
    "h": (0, 0, 0.0, False, (500, 1400, 2450, 3400)),
}
# Stops: (burst centre Hz, burst band width Hz, voiced, F1-F4 locus).
STOPS = {
    "p": (1200, 1800, False, (300, 800, 2200, 3300)), "t": (4500, 3000, False, (300, 1750, 2600, 3500)),
    "k": (2300, 1500, False, (300, 2000, 2400, 3400)), "b": (1200, 1800, True, (300, 800, 2200, 3300)),
    "d": (4500, 3000, True, (300, 1750, 2600, 3500)), "g": (2300, 1500, True, (300, 2000, 2400, 3400)),
}
BANDWIDTHS = np.array([70.0, 100.0, 150.0, 250.0])
CONTROL_MS = 1.0  # control-track resolution
HF_LEVEL = 0.03  # high-passed glottal source mixed into the voiced output, relative level
FRIC_LEVEL = 0.8  # frication noise relative to the peak-normalised voiced part
BLOCK = 128  # samples per coefficient update of the time-varying resonator cascade


@dataclass(frozen=True)
class Speaker:
    """Voice parameters of one demo speaker."""

    id: str
    chapters: tuple[str, ...]
    female: bool
    f0: float  # mean f0 (Hz)
    tract: float  # formant scaling (shorter tract -> higher formants)
    jitter: float
    shimmer: float
    breath: float  # aspiration noise level relative to voicing
    open_quotient: float
    rate: float  # speaking-rate factor (> 1 is slower)


def make_speakers(cfg: DemoConfig) -> list[Speaker]:
    """Speaker ids (LibriTTS-like numbers), chapters and voice parameters drawn from the corpus seed."""
    rng = np.random.default_rng([cfg.seed, 1])
    ids = rng.choice(np.arange(19, 9000), size=cfg.n_speakers, replace=False)
    out = []
    for i, sid in enumerate(ids):
        female = i % 2 == 0
        n_chap = 1 + int(rng.integers(0, 2))
        chapters = tuple(str(c) for c in sorted(rng.choice(np.arange(1000, 300000), size=n_chap, replace=False)))
        out.append(Speaker(
            id=str(int(sid)), chapters=chapters, female=female,
            f0=float(rng.uniform(175, 235) if female else rng.uniform(95, 135)),
            tract=float(rng.uniform(1.10, 1.22) if female else rng.uniform(0.92, 1.05)),
            jitter=float(rng.uniform(0.004, 0.012)), shimmer=float(rng.uniform(0.03, 0.08)),
            breath=float(rng.uniform(0.05, 0.12) if female else rng.uniform(0.02, 0.07)),
            open_quotient=float(rng.uniform(0.5, 0.7) if female else rng.uniform(0.4, 0.6)),
            rate=float(rng.uniform(0.85, 1.15)),
        ))
    return out


def _phone_sequence(rng: np.random.Generator, speech_s: float, rate: float) -> list[tuple[str, float]]:
    """Words of (C)V(C) syllables with occasional pauses until ``speech_s`` seconds: [(phone, seconds)]."""
    vowels, sons = list(VOWELS), list(SONORANTS)
    frics, stops = [k for k in FRICATIVES if k != "h"], list(STOPS)

    def consonant() -> str:
        r = rng.random()
        pool = sons if r < 0.4 else stops if r < 0.7 else frics if r < 0.95 else ["h"]
        return pool[int(rng.integers(len(pool)))]

    def dur(ph: str) -> float:
        if ph in VOWELS:
            d = rng.uniform(0.07, 0.18)
        elif ph in STOPS:
            d = rng.uniform(0.06, 0.10)
        elif ph in FRICATIVES:
            d = rng.uniform(0.07, 0.14)
        else:
            d = rng.uniform(0.05, 0.09)
        return float(d * rate)

    seq: list[tuple[str, float]] = []
    total = 0.0
    while total < speech_s:
        for _ in range(int(rng.integers(1, 4))):  # syllables per word
            syl = ([consonant()] if rng.random() < 0.8 else []) + [vowels[int(rng.integers(len(vowels)))]]
            if rng.random() < 0.35:
                syl.append(consonant())
            for ph in syl:
                d = dur(ph)
                seq.append((ph, d))
                total += d
        if total < speech_s - 0.3 and rng.random() < 0.3:
            d = float(rng.uniform(0.08, 0.25))
            seq.append(("pau", d))
            total += d
    if seq and seq[-1][0] == "pau":
        seq.pop()
    return seq


def _smooth(x: np.ndarray, ms: float, axis: int = 0) -> np.ndarray:
    return gaussian_filter1d(x, sigma=ms / CONTROL_MS, axis=axis, mode="nearest")


def _bandpass(noise: np.ndarray, centre: float, width: float, sr: int) -> np.ndarray:
    lo = max(100.0, centre - width / 2)
    hi = min(0.95 * sr / 2, centre + width / 2)
    sos = signal.butter(2, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, noise)


def _rosenberg(frac: np.ndarray, oq: float) -> np.ndarray:
    """Rosenberg glottal flow pulse at phase ``frac`` in [0, 1): opening 2/3, closing 1/3 of the open phase."""
    tp, tn = oq * 2 / 3, oq / 3
    g = np.zeros_like(frac)
    op = frac < tp
    g[op] = 0.5 * (1 - np.cos(np.pi * frac[op] / tp))
    cl = (frac >= tp) & (frac < tp + tn)
    g[cl] = np.cos(0.5 * np.pi * (frac[cl] - tp) / tn)
    return g


def _resonator_cascade(x: np.ndarray, freqs: np.ndarray, bws: np.ndarray, sr: int) -> np.ndarray:
    """Filter ``x`` through cascaded 2nd-order resonators whose (F, B) tracks (samples x K) move blockwise."""
    n, k = freqs.shape
    y = np.empty_like(x)
    zi = np.zeros((k, 2))
    for s in range(0, n, BLOCK):
        f = freqs[min(s + BLOCK // 2, n - 1)]
        b = bws[min(s + BLOCK // 2, n - 1)]
        r = np.exp(-np.pi * b / sr)
        a1 = -2 * r * np.cos(2 * np.pi * f / sr)
        a2 = r * r
        sos = np.zeros((k, 6))
        sos[:, 0] = 1 + a1 + a2  # unity gain at DC
        sos[:, 3], sos[:, 4], sos[:, 5] = 1.0, a1, a2
        y[s:s + BLOCK], zi = signal.sosfilt(sos, x[s:s + BLOCK], zi=zi)
    return y


def synth_utterance(spk: Speaker, rng: np.random.Generator, sr: int) -> np.ndarray:
    """One speech-like utterance of 2-4 s (float64, peak 0.5, low noise floor, 100-300 ms quiet edges)."""
    total_s = float(rng.uniform(2.0, 4.0))
    lead, tail = float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.1, 0.3))
    phones = _phone_sequence(rng, total_s - lead - tail, spk.rate)
    step = int(round(sr * CONTROL_MS / 1000))
    nc = int(round((lead + sum(d for _, d in phones) + tail) * 1000 / CONTROL_MS))
    n = nc * step

    # Control tracks at 1 ms: formant targets, voicing, aspiration, frication/burst levels per noise band.
    form = np.zeros((nc, 4))
    bwm = np.ones(nc)
    av = np.zeros(nc)
    ah = np.zeros(nc)
    bands: dict[tuple[float, float], np.ndarray] = {}
    anchors_t, anchors_f = [0], [np.array(VOWELS["ah"], float)]
    accents: list[int] = []
    pauses: list[tuple[int, int]] = []
    t = int(round(lead * 1000 / CONTROL_MS))
    for ph, d in phones:
        m = max(1, int(round(d * 1000 / CONTROL_MS)))
        sl = slice(t, t + m)
        mid = t + m // 2
        if ph == "pau":
            pauses.append((t, t + m))
        elif ph in VOWELS:
            target = np.array(VOWELS[ph], float) * rng.uniform(0.94, 1.06, 4)
            av[sl] = rng.uniform(0.8, 1.0)
            anchors_t += [t + m // 4, t + 3 * m // 4]
            anchors_f += [target, target * rng.uniform(0.97, 1.03, 4)]
            if rng.random() < 0.35:
                accents.append(mid)
        elif ph in SONORANTS:
            target, amp, bw = SONORANTS[ph]
            av[sl] = amp
            bwm[sl] = bw
            anchors_t.append(mid)
            anchors_f.append(np.array(target, float))
        elif ph in FRICATIVES:
            centre, width, lvl, voiced, locus = FRICATIVES[ph]
            anchors_t.append(mid)
            anchors_f.append(np.array(locus, float))
            if ph == "h":
                ah[sl] = 0.25
            else:
                bands.setdefault((centre, width), np.zeros(nc))[sl] = lvl
                av[sl] = 0.35 if voiced else 0.0
        else:  # stop: closure (silence or voice bar), then a short burst and aspiration
            centre, width, voiced, locus = STOPS[ph]
            closure = int(m * 0.7)
            burst = slice(t + closure, t + min(m, closure + 12))
            av[t:t + closure] = 0.12 if voiced else 0.0
            bands.setdefault((centre, width), np.zeros(nc))[burst] = 0.5
            if not voiced:
                ah[t + closure:t + m] = 0.15
            anchors_t.append(t + closure)
            anchors_f.append(np.array(locus, float))
        t += m
    anchors_t.append(nc - 1)
    anchors_f.append(np.array(VOWELS["ah"], float))
    at = np.array(anchors_t, float)
    af = np.array(anchors_f)
    order = np.argsort(at, kind="stable")
    for j in range(4):
        form[:, j] = np.interp(np.arange(nc), at[order], af[order, j])
    form = _smooth(form, 12.0) * spk.tract
    form[:, 0] = np.maximum(form[:, 0], 200.0)
    av = _smooth(av, 6.0)
    ah = _smooth(ah, 4.0)
    bwm = _smooth(bwm, 8.0)

    # Intonation: declining phrases between pauses, pitch accents, slow wander, jitter; final fall or rise.
    tt = np.arange(nc)
    bounds = [int(lead * 1000 / CONTROL_MS)] + [p for pa in pauses for p in pa] + [t]
    rel = np.zeros(nc)
    for a, b in zip(bounds[0::2], bounds[1::2]):
        if b > a:
            rel[a:b] = 0.12 - 0.24 * (tt[a:b] - a) / max(1, b - a)
    for c in accents:
        rel += rng.uniform(0.06, 0.2) * np.exp(-0.5 * ((tt - c) / rng.uniform(50, 100)) ** 2)
    if rng.random() < 0.2:  # question-like final rise
        rel += 0.3 * np.clip((tt - (t - 300)) / 300.0, 0, 1)
    rel += _smooth(rng.normal(0, 0.12, nc), 60.0)
    f0c = spk.f0 * np.exp(_smooth(rel, 20.0))
    f0c *= 1 + spk.jitter * np.repeat(rng.normal(0, 1, nc // 5 + 1), 5)[:nc]

    # Sample-rate tracks.
    tc = (np.arange(nc) + 0.5) * step
    ts = np.arange(n)
    f0 = np.interp(ts, tc, f0c)
    av_s = np.interp(ts, tc, av)
    ah_s = np.interp(ts, tc, ah)
    freqs = np.stack([np.interp(ts, tc, form[:, j]) for j in range(4)], axis=1)
    bw_s = np.interp(ts, tc, bwm)[:, None] * BANDWIDTHS[None, :] * rng.uniform(0.9, 1.1, 4)
    # A fixed fifth resonance shapes the 4-5 kHz region.
    freqs = np.concatenate([freqs, np.full((n, 1), 4500.0 * spk.tract)], axis=1)
    bw_s = np.concatenate([bw_s, np.full((n, 1), 350.0)], axis=1)

    # Glottal source: Rosenberg pulses with shimmer, differentiated (flow derivative incl. lip radiation).
    phase = np.cumsum(f0 / sr)
    period = np.floor(phase).astype(np.int64)
    frac = phase - period
    flow = _rosenberg(frac, spk.open_quotient)
    shimmer = 1 + spk.shimmer * rng.normal(0, 1, int(period[-1]) + 2)
    flow *= np.clip(shimmer[period], 0.5, 1.5)
    dflow = np.diff(flow, prepend=0.0) * (sr / (np.pi * spk.f0))
    noise = rng.normal(0, 1, n)
    asp = noise * (0.4 + 0.6 * flow)  # pitch-synchronous aspiration
    src = av_s * (dflow + spk.breath * asp) + ah_s * noise
    voiced = _resonator_cascade(src, freqs, bw_s, sr)
    # The all-pole cascade falls off steeply above F5; real voices keep weak harmonics up to ~8 kHz.
    hf = signal.butter(2, 3500, btype="highpass", fs=sr, output="sos")
    voiced += HF_LEVEL * np.std(voiced) / (np.std(src) + 1e-12) * signal.sosfilt(hf, src)

    # Frication and bursts: band-passed noise, per noise band, with its level track.
    fric = np.zeros(n)
    fnoise = rng.normal(0, 1, n)
    for (centre, width), lvl in sorted(bands.items()):
        lvl_s = np.interp(ts, tc, _smooth(lvl, 5.0))
        fric += lvl_s * _bandpass(fnoise, centre * min(spk.tract, 1.1), width, sr)
    speech = voiced / (np.max(np.abs(voiced)) + 1e-9) + fric * FRIC_LEVEL
    speech *= 0.5 / (np.max(np.abs(speech)) + 1e-9)

    # Room-ish background: low-level coloured noise everywhere (about -65 dB re the peak).
    floor = signal.lfilter([1.0], [1.0, -0.9], rng.normal(0, 1, n))
    speech += floor * (0.5 * 10 ** (-65 / 20) / (np.std(floor) + 1e-12))
    return speech
