"""The embedded demo corpus: layout, determinism, framing, and truth offsets that match the signals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from annotate.sources import demo
from annotate.core import spectral
from annotate.core.audio import load

SMALL = dict(n_speakers=3, utts_per_speaker=3, seed=7)  # 9 utterances, 27 spoofs
TOL_24K = 12  # samples at 24 kHz (0.5 ms): how close an independent spectral search must land on truth.json


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return demo.generate(tmp_path_factory.mktemp("demo") / "c", **SMALL)


def _pairs(root: Path) -> list[tuple[str, Path, Path, int]]:
    truth = demo.load_truth(root)
    out = []
    for key, off in sorted(truth.items()):
        voc, uid = key.split("__")
        out.append((key, root / "gt" / f"{uid}.wav", root / voc / f"{uid}_gen.wav", off))
    return out


def spectral_offset(real: np.ndarray, spoof: np.ndarray, lags: np.ndarray, floor_db: float = -50.0) -> np.ndarray:
    """Mean |log-magnitude difference| (project STFT: 16 kHz, 512/128) of real vs spoof for every lag k,
    comparing spoof[n] with real[n - k]; independent of annotate.sources.demo's own search."""
    lo, hi = int(lags.min()), int(lags.max())
    start = max(0, -lo)
    length = min(len(real) - start, len(spoof) - hi - start)
    ref = np.abs(spectral.stft(real[start:start + length].astype(np.float32)))
    fl = ref.max() * 10 ** (floor_db / 20)
    ref = np.log(ref + fl)
    out = []
    for chunk in np.array_split(lags, max(1, len(lags) // 48)):
        batch = np.stack([spoof[start + k:start + k + length] for k in chunk]).astype(np.float32)
        mag = np.abs(spectral.stft(batch))
        out.append(np.abs(np.log(mag + fl) - ref[None]).mean(axis=(1, 2)))
    return np.concatenate(out)


def best_lag(real: np.ndarray, spoof: np.ndarray, center: int, radius: int, step: int = 1) -> float:
    """Argmin of :func:`spectral_offset` over ``center +- radius`` (parabolic refinement when step is 1)."""
    lags = np.arange(center - radius, center + radius + 1, step)
    d = spectral_offset(real, spoof, lags)
    i = int(np.argmin(d))
    k = float(lags[i])
    if step == 1 and 0 < i < len(d) - 1 and d[i - 1] - 2 * d[i] + d[i + 1] > 0:
        k += 0.5 * (d[i - 1] - d[i + 1]) / (d[i - 1] - 2 * d[i] + d[i + 1])
    return k


def test_layout_names_and_headers(corpus: Path):
    ids = sorted(p.stem for p in (corpus / "gt").glob("*.wav"))
    assert len(ids) == 9
    assert sorted(p.name for p in corpus.iterdir() if p.is_dir()) == sorted(["gt", *demo.VOCODERS])
    speakers = set()
    for uid in ids:
        parts = uid.split("_")
        assert len(parts) == 4 and all(p.isdigit() for p in parts) and len(parts[2]) == 6 and parts[3] == "000000", uid
        speakers.add(parts[0])
        info = sf.info(str(corpus / "gt" / f"{uid}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
        assert 2.0 <= info.frames / 24000 <= 4.1
        for v in demo.VOCODERS:
            si = sf.info(str(corpus / v / f"{uid}_gen.wav"))
            assert (si.samplerate, si.channels, si.subtype) == (24000, 1, "PCM_16")
            assert si.frames % demo.HOP == 0, (v, uid, si.frames)
    assert len(speakers) == 3
    truth = json.loads((corpus / "truth.json").read_text())
    assert sorted(truth) == sorted(f"{v}__{u}" for v in demo.VOCODERS for u in ids)
    marker = json.loads((corpus / demo.MARKER).read_text())
    assert marker["n_speakers"] == 3 and marker["seed"] == 7 and marker["version"] == demo.VERSION
    assert marker["revision"] == demo.REVISION and demo.is_complete(corpus, **SMALL)
    assert not demo.is_complete(corpus, **{**SMALL, "seed": 8})


def test_split_lists_cover_every_utterance_once(corpus: Path):
    ids = {p.name for p in (corpus / "gt").glob("*.wav")}
    lists = {s: (corpus / f"{s}.txt").read_text().split() for s in ("train", "dev", "test")}
    flat = [name for names in lists.values() for name in names]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
    assert [len(lists[s]) for s in ("train", "dev", "test")] == [5, 2, 2]  # ~60/20/20 of 9
    spk = {s: {n.split("_")[0] for n in names} for s, names in lists.items()}
    assert spk["train"] & (spk["dev"] | spk["test"]), "speakers should overlap across splits, as in LibriSeVoc"


def test_signals_look_like_speech_and_spoofs_differ(corpus: Path):
    for key, real_p, spoof_p, _ in _pairs(corpus)[:9]:
        x, _ = sf.read(str(real_p))
        y, _ = sf.read(str(spoof_p))
        assert 0.45 <= np.abs(x).max() <= 0.51
        frame = 480
        e = np.sqrt(np.mean(x[: len(x) // frame * frame].reshape(-1, frame) ** 2, axis=1))
        db = 20 * np.log10(e / e.max() + 1e-12)
        assert db[0] < -40 and db[-1] < -40, "edges should be quiet"
        assert np.mean(db > -20) > 0.4, "most of the utterance should be active speech"
        assert np.isfinite(y).all() and np.abs(y).max() > 0.05
        n = min(len(x), len(y))
        assert np.corrcoef(x[:n], y[:n])[0, 1] < 0.99, f"{key}: spoof is a copy of the real"


def test_framing_bookkeeping_is_exact():
    """An identity 'vocoder' through frame_effects: the recorded shift is the true offset to the sample."""
    spk = demo.make_speakers(demo.DemoConfig(n_speakers=1))[0]
    x = demo.synth_utterance(spk, np.random.default_rng(3), 24000)
    kinds = set()
    for s in range(12):
        y, shift = demo.frame_effects(x, np.random.default_rng([s, 1]), 24000)
        assert len(y) % demo.HOP == 0
        kinds.add(int(np.sign(shift)))
        if shift:
            assert 24 <= abs(shift) <= 960
        # spoof[n] == real[n - shift] on the common span
        n = np.arange(max(0, shift), min(len(y), len(x) + shift) - demo.HOP)
        np.testing.assert_array_equal(y[n], x[n - shift])
        assert abs(demo.logmag_offset(x, y, center=shift + 40, radius=64) - shift) <= 1.0
    assert kinds == {-1, 0, 1}


def test_truth_offsets_match_an_independent_spectral_search(corpus: Path):
    """Shifting by the recorded offset minimises the log-magnitude distance (project STFT at 16 kHz)."""
    errs, failures = [], []
    for key, real_p, spoof_p, off in _pairs(corpus):
        real, _ = load(str(real_p), 16000)
        spoof, _ = load(str(spoof_p), 16000)
        c = round(off * 2 / 3)
        k = best_lag(real, spoof, c, 16) * 1.5  # back to 24 kHz samples (searched +-24)
        errs.append(k - off)
        if abs(k - off) > TOL_24K:
            failures.append((key, off, round(k, 1)))
    errs = np.abs(errs)
    assert np.mean(errs <= TOL_24K) >= 0.95, failures
    assert np.median(errs) <= 6, np.median(errs)


def test_edge_shifts_are_found_by_a_wide_search(corpus: Path):
    """For edge-shifted spoofs a +-45 ms search lands on the recorded offset, not on 0 or its negative."""
    shifted = [p for p in _pairs(corpus) if abs(p[3]) >= 200][:3]
    assert len(shifted) >= 2
    for key, real_p, spoof_p, off in shifted:
        real, _ = load(str(real_p), 16000)
        spoof, _ = load(str(spoof_p), 16000)
        coarse = best_lag(real, spoof, 0, 720, step=12)
        fine = best_lag(real, spoof, int(coarse), 12)
        assert abs(fine * 1.5 - off) <= TOL_24K, (key, off, fine * 1.5)


def test_generation_is_deterministic_and_ensure_caches(tmp_path: Path):
    kw = dict(n_speakers=1, utts_per_speaker=1, seed=3)
    a = demo.ensure(tmp_path / "a", **kw)
    b = demo.generate(tmp_path / "b", **kw)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 1 + len(demo.VOCODERS) + 5  # gt, one per vocoder, lists + truth + marker
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel

    mtime = (a / demo.MARKER).stat().st_mtime_ns
    assert demo.ensure(tmp_path / "a", **kw) == a
    assert (a / demo.MARKER).stat().st_mtime_ns == mtime, "an up-to-date corpus must not be regenerated"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"

    demo.ensure(a, n_speakers=1, utts_per_speaker=1, seed=4, vocoders=("lpc",))
    assert sorted(p.name for p in a.iterdir() if p.is_dir()) == ["gt", "lpc"]
    assert json.loads((a / demo.MARKER).read_text())["seed"] == 4
    assert len(list((a / "gt").glob("*.wav"))) == 1


def test_ensure_refuses_foreign_folder_and_bad_params(tmp_path: Path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(demo.DemoError, match="not a demo corpus"):
        demo.ensure(tmp_path / "mine", n_speakers=1, utts_per_speaker=1)
    with pytest.raises(demo.DemoError, match="not a demo corpus"):
        demo.generate(tmp_path / "mine", n_speakers=1, utts_per_speaker=1)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["thesis.tex"]
    with pytest.raises(demo.DemoError, match="unknown demo vocoder"):
        demo.generate(tmp_path / "x", vocoders=("hifigan",))
    assert not (tmp_path / "x").exists()


def test_default_root_respects_cache_env(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("VOCMASK_CACHE", str(tmp_path))
    assert demo.default_root() == tmp_path / "demo-v1"
    monkeypatch.delenv("VOCMASK_CACHE")
    assert demo.default_root() == Path.home() / ".cache" / "vocmask" / "demo-v1"
