"""End to end: `annotate build` on the demo corpus and on a salted copy of it."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from annotate.pipeline.build import BuildConfig, BuildError, build
from annotate.core.dataset import iter_rows, read_table, shard_paths
from annotate.sources.demo import load_truth

from conftest import copy_subset as _subset




def test_demo_dataset_loads_with_datasets(demo_ds):
    from datasets import load_dataset

    files = {s: sorted(str(p) for p in shard_paths(demo_ds, s)) for s in ("train", "dev", "test")}
    assert all(files.values())
    ds = load_dataset("parquet", data_files=files)
    assert set(ds) == {"train", "dev", "test"}
    feats = ds["train"].features
    assert type(feats["mask"]).__name__ == "Array2D" and feats["mask"].shape == (None, 257)
    row = ds["test"].with_format("numpy")[0]
    assert row["mask"].ndim == 2 and row["mask"].shape[1] == 257
    assert row["spoof_logmag"].shape == row["mask"].shape == row["diff"].shape
    # the folder is also a Hub-style dataset repo
    assert load_dataset(str(demo_ds))["train"].num_rows == ds["train"].num_rows
    summary = json.loads((demo_ds / "summary.json").read_text())
    assert summary["rows_out"] == sum(d.num_rows for d in ds.values())
    assert summary["rejects"] == 0, (demo_ds / "rejects.jsonl").read_text()


def test_rows_are_aligned_annotated_and_consistent(demo_ds):
    from annotate.core.audio import decode_bytes
    from annotate.core.spectral import artifact_mask, log_magnitude, stft

    row = next(iter_rows(demo_ds, "train"))
    real, sr = decode_bytes(row["real_audio"]["bytes"])
    spoof, _ = decode_bytes(row["spoof_audio"]["bytes"])
    assert sr == 16000 and len(real) == len(spoof) == row["num_samples"]
    assert 0.04 < row["mask"].mean() <= 0.05 + 1 / row["mask"].size
    # the stored columns are what the spectral core computes from the stored audio (FLAC is 16-bit)
    s_s, s_r = stft(spoof), stft(real)
    assert np.abs(log_magnitude(s_s) - row["spoof_logmag"])[np.abs(s_s) > 1e-2].max() < 0.05
    mask, _ = artifact_mask(np.abs(s_s), np.abs(s_r))
    assert (mask == row["mask"]).mean() > 0.99


def test_alignment_recovers_known_trims(demo_ds, demo_corpus):
    truth = load_truth(demo_corpus)
    rows = list(iter_rows(demo_ds, columns=["id", "offset"]))
    assert len(rows) == len(truth)
    err = np.array([abs(r["offset"] - truth[r["id"]] * 16000 / 24000) for r in rows])
    assert (err <= 128).mean() >= 0.95, sorted(err)[-5:]  # within one hop for >= 95% of pairs
    assert np.median(err) <= 16  # and sample-accurate (<= 1 ms) for most


def test_same_masks_with_one_and_two_workers(demo_corpus, tmp_path):
    corpus = tmp_path / "LibriSeVoc"
    _subset(demo_corpus, corpus, 5)
    outs = []
    for w in (1, 2):
        out = tmp_path / f"ds{w}"
        build(BuildConfig(source="librisevoc", root=str(corpus), shard_size=4), out, workers=w, progress=False)
        outs.append(out)
    names = [[p.name for p in shard_paths(o)] for o in outs]
    assert names[0] == names[1] and len(names[0]) >= 3
    # shards are dispatched largest first (the one worker ran them in dispatch order)
    parts = sorted((json.loads(p.read_text()) for p in (outs[0] / ".parts").glob("*.json")), key=lambda p: p["started"])
    sizes = [p["pairs"] for p in parts]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) > 1, sizes
    t1, t2 = (read_table(o) for o in outs)
    assert t1.num_rows == 15
    for col in ("id", "mask", "diff", "spoof_logmag", "offset", "spoof_audio"):
        assert t1.column(col).equals(t2.column(col)), col


def _write(path: Path, x, sr):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="FLOAT" if np.asarray(x).dtype == np.float32 else "PCM_16")


def test_salted_corpus_rejects_every_bad_pair_and_keeps_every_good_one(demo_corpus, tmp_path):
    corpus = tmp_path / "LibriSeVoc"
    utts = _subset(demo_corpus, corpus, 6)
    vocs = sorted(p.name for p in corpus.iterdir() if p.is_dir() and p.name != "gt")
    v = vocs[0]
    good_ids = {f"{voc}__{u}" for voc in vocs for u in utts}
    x, sr = sf.read(corpus / v / f"{utts[0]}_gen.wav", dtype="float32")
    bad = {}
    # corrupt and empty spoofs
    (corpus / v / f"{utts[0]}_gen.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    bad[f"{v}__{utts[0]}"] = "unreadable audio"
    _write(corpus / v / f"{utts[1]}_gen.wav", np.zeros(0, np.float32), sr)
    bad[f"{v}__{utts[1]}"] = "empty audio"
    nan = x.copy(); nan[1000:1010] = np.nan
    _write(corpus / v / f"{utts[2]}_gen.wav", nan, sr)
    bad[f"{v}__{utts[2]}"] = "non-finite samples"
    _write(corpus / v / f"{utts[3]}_gen.wav", np.stack([x, x], axis=1), sr)
    bad[f"{v}__{utts[3]}"] = "not mono"
    _write(corpus / vocs[1] / f"{utts[0]}_gen.wav", x[::6].copy(), 4000)
    bad[f"{vocs[1]}__{utts[0]}"] = "sample rate too low"
    # a spoof whose real is missing, a duplicated id, and a non-parallel pair (another utterance's audio)
    _write(corpus / v / "9999_1_000001_000000_gen.wav", x, sr)
    bad[f"{v}__9999_1_000001_000000"] = "no real twin"
    shutil.copy(corpus / vocs[1] / f"{utts[1]}_gen.wav", corpus / vocs[1] / f"{utts[1]}_gen.flac")
    dup = f"{vocs[1]}__{utts[1]}"  # the .flac twin is rejected, the .wav stays
    other, _ = sf.read(demo_corpus / "gt" / f"{sorted(p.stem for p in (demo_corpus / 'gt').glob('*.wav'))[-1]}.wav", dtype="float32")
    _write(corpus / vocs[1] / f"{utts[2]}_gen.wav", other, sr)
    bad[f"{vocs[1]}__{utts[2]}"] = "alignment failed"
    # an odd but usable rate is resampled, not rejected
    y, ysr = sf.read(corpus / vocs[-1] / f"{utts[4]}_gen.wav", dtype="float32")
    import soxr

    _write(corpus / vocs[-1] / f"{utts[4]}_gen.wav", soxr.resample(y, ysr, 22050).astype(np.float32), 22050)

    out = tmp_path / "ds"
    summary = build(BuildConfig(source="librisevoc", root=str(corpus), shard_size=8), out, workers=2, progress=False)
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    by_id = {}
    for r in rejects:
        by_id.setdefault(r["id"], []).append(r["reason"])
    for rid, reason in bad.items():
        assert rid in by_id, f"{rid} ({reason}) not rejected"
        assert any(reason in m for m in by_id[rid]), (rid, by_id[rid])
    assert any("duplicated id" in m for m in by_id[dup])
    kept = {r["id"] for r in iter_rows(out, columns=["id"])}
    assert kept == good_ids - set(bad), (good_ids - set(bad)) ^ kept
    assert summary["rows_out"] == len(kept) and summary["rejects"] == len(rejects)
    assert sum(summary["rejects_by_reason"].values()) == len(rejects)


def test_changed_parameters_are_refused_unless_overwrite(demo_corpus, tmp_path):
    corpus = tmp_path / "LibriSeVoc"
    _subset(demo_corpus, corpus, 1)
    out = tmp_path / "ds"
    cfg = BuildConfig(source="librisevoc", root=str(corpus))
    build(cfg, out, progress=False)
    again = build(cfg, out, progress=False)  # same parameters: resumes (nothing left to do)
    assert again["rows_out"] == 3
    from dataclasses import replace

    from annotate.core.spectral import MaskConfig

    other = replace(cfg, mask=MaskConfig(quantile=0.9))
    with pytest.raises(BuildError, match="other parameters.*mask"):
        build(other, out, progress=False)
    assert build(other, out, overwrite=True, progress=False)["rows_out"] == 3


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "annotate.cli", *args], capture_output=True, text=True)


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path):
    r = _cli("build", "--source", "librisevoc", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "not found" in r.stderr
    r = _cli("build", "--source", "nosuch", "--root", str(tmp_path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "unknown source" in r.stderr


def test_show_and_stats(demo_ds, tmp_path):
    from annotate.cli import main

    rid = next(iter_rows(demo_ds, "test", columns=["id"]))["id"]
    png = tmp_path / "fig.png"
    assert main(["show", str(demo_ds), "--id", rid, "-o", str(png)]) == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert main(["show", str(demo_ds), "--id", "nope", "-o", str(png)]) == 2
    from annotate.show import stats

    s = stats(demo_ds)
    assert s["rows"] == sum(r["rows"] for r in s["by_split_vocoder"])
    assert abs(s["mask_coverage"] - 0.05) < 0.005


def test_spoofs_of_one_real_share_its_analysis_and_give_the_same_rows(demo_corpus, monkeypatch):
    import annotate.pipeline.build as B
    from annotate.sources import read_source

    pairs, _ = read_source("librisevoc", str(demo_corpus))
    tasks = B.plan_shards([p for p in pairs if p.split == "test"], shard_size=64)
    ps = list(tasks[0].pairs[:6])
    # shards keep the spoofs of one real utterance together
    assert [p.utt_id for p in ps] == sorted(p.utt_id for p in ps) and ps[0].utt_id == ps[1].utt_id == ps[2].utt_id
    cfg = BuildConfig(source="librisevoc", root=str(demo_corpus))
    fresh = [B.annotate_pair(p, cfg)[0] for p in ps]
    loads = []
    real_load = B.load
    monkeypatch.setattr(B, "load", lambda path, *a, **k: (loads.append(path), real_load(path, *a, **k))[1])
    reuse: dict = {}
    shared = [B.annotate_pair(p, cfg, reuse)[0] for p in ps]
    n_reals = len({p.real_path for p in ps})
    assert len(loads) == len(ps) + n_reals  # every spoof, but each real once
    for a, b in zip(fresh, shared):
        for key in ("mask", "diff", "spoof_logmag"):
            np.testing.assert_array_equal(a[key], b[key])
        assert a["offset"] == b["offset"] and a["real_audio"]["bytes"] == b["real_audio"]["bytes"]


def test_real_flac_is_encoded_once_per_aligned_slice(demo_corpus, tmp_path, monkeypatch):
    """Spoofs that keep the real's timing share the real's FLAC bytes (one encode), and a differently trimmed
    spoof gets its own slice: rows as without sharing."""
    import soundfile as sf

    import annotate.pipeline.build as B
    from annotate.sources.base import Pair

    real, sr = sf.read(sorted((demo_corpus / "gt").glob("*.wav"))[0], dtype="float32")
    sf.write(tmp_path / "real.wav", real, sr)
    trim = sr // 4
    spoofs = [real, real.copy(), real[trim:]]  # two keep the real's timing; one is trimmed: another slice of the real
    pairs = []
    for i, s in enumerate(spoofs):
        sf.write(tmp_path / f"s{i}.wav", s, sr)
        pairs.append(Pair(id=f"v{i}__u", utt_id="u", real_path=str(tmp_path / "real.wav"),
                          spoof_path=str(tmp_path / f"s{i}.wav"), vocoder=f"v{i}", speaker="spk", split="test",
                          source="manifest"))
    cfg = BuildConfig(source="manifest")
    fresh = [B.annotate_pair(p, cfg)[0] for p in pairs]
    encoded = []
    real_encode = B.encode_flac
    monkeypatch.setattr(B, "encode_flac", lambda x, sr: (encoded.append(len(x)), real_encode(x, sr))[1])
    reuse: dict = {}
    shared = [B.annotate_pair(p, cfg, reuse)[0] for p in pairs]
    assert [r["offset"] for r in shared] == [0, 0, -(trim * 16000 // sr)]
    assert len(encoded) == 3 + 2  # three spoofs; the real twice (the full slice once, the trimmed slice once)
    for a, b in zip(fresh, shared):
        assert a["real_audio"]["bytes"] == b["real_audio"]["bytes"] and a["spoof_audio"]["bytes"] == b["spoof_audio"]["bytes"]


def test_sample_alignment_ignores_the_spoofs_level(demo_corpus):
    """A vocoder that changes loudness must not move the alignment: the same offset at any spoof gain
    (the log-spectral search removes each bin's mean log ratio; before that, 2 dB moved offsets by up to 6 ms)."""
    from annotate.pipeline.align import align
    from annotate.core.audio import load
    from annotate.sources import read_source
    from annotate.core.spectral import stft

    pairs, _ = read_source("librisevoc", str(demo_corpus))
    for p in pairs[::8]:
        real, _ = load(p.real_path, 16000)
        spoof, _ = load(p.spoof_path, 16000)
        mag_real = np.abs(stft(real))
        offsets = {g: align(real, spoof * np.float32(g), mag_real, np.abs(stft(spoof * np.float32(g)))).offset
                   for g in (1.0, 0.5, 0.8, 1.25)}
        assert len(set(offsets.values())) == 1, (p.id, offsets)
