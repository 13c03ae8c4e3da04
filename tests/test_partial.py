"""`annotate partial`: sample-exact spans, masks confined to the splices, determinism, bona fide rows."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from annotate.core.audio import decode_bytes
from annotate.core.dataset import frame_labels_from_samples, iter_rows, shard_paths
from annotate.pipeline.partial import PartialConfig, make_partial, partial_row
from annotate.core.spectral import DEFAULT_MASK, DEFAULT_STFT


@pytest.fixture(scope="module")
def partial_ds(demo_ds, tmp_path_factory):
    from annotate.cli import main

    out = tmp_path_factory.mktemp("partial") / "part"
    assert main(["partial", str(demo_ds), "--out", str(out), "--segments", "2", "--seed", "3", "--no-progress"]) == 0
    return out


def _rows(ds, split="test"):
    return list(iter_rows(ds, split))


def _sample_labels(n: int, spans) -> np.ndarray:
    lab = np.zeros(n, bool)
    for a, b in spans:
        lab[a:b] = True
    return lab


def test_spans_are_exact_to_the_sample(partial_ds):
    rows = [r for r in _rows(partial_ds) if r["spans"]]
    assert rows
    for r in rows:
        mixed, _ = decode_bytes(r["spoof_audio"]["bytes"])
        real, _ = decode_bytes(r["real_audio"]["bytes"])
        assert len(mixed) == len(real) == r["num_samples"]
        lab = _sample_labels(len(real), r["spans"])
        assert len(r["spans"]) == 2 and all(b - a >= 2 * 80 for a, b in r["spans"])
        assert np.array_equal(mixed[~lab], real[~lab]), r["id"]  # outside the spans: the real, bit for bit
        changed = mixed != real
        assert changed[lab].mean() > 0.5  # inside: the spoof (a vocoder rarely reproduces a 16-bit sample)
        np.testing.assert_array_equal(np.asarray(r["frame_labels"], np.float32),
                                      frame_labels_from_samples(lab, DEFAULT_STFT.hop_length, r["mask"].shape[0]))
        fl = np.asarray(r["frame_labels"])
        assert fl.shape == (DEFAULT_STFT.n_frames(len(real)),) and 0 < fl.mean() < 1
        # the cells partition the samples: the labels sum back to the number of spoofed samples
        edges = np.clip(np.arange(len(fl) + 1) * 128 - 64, 0, len(real))
        edges[-1] = len(real)
        assert int(round(float((fl * np.diff(edges)).sum()))) == int(lab.sum())


def test_mask_is_zero_outside_spans_beyond_the_smoothing_footprint(partial_ds):
    half, hop, r = DEFAULT_STFT.n_fft // 2, DEFAULT_STFT.hop_length, DEFAULT_MASK.time_size // 2
    checked = 0
    for row in _rows(partial_ds):
        mask, d = row["mask"], row["diff"].astype(np.float32)
        assert not (mask.astype(bool) & (d <= 0)).any()  # never a bin with D = 0
        lab = _sample_labels(row["num_samples"], row["spans"])
        centres = np.arange(mask.shape[0]) * hop
        near = np.array([lab[max(0, c - half - 2): c + half + 2].any() for c in centres])
        near = np.convolve(near, np.ones(2 * r + 1), mode="same") > 0
        assert not mask[~near].any() and not d[~near].any(), row["id"]
        if row["spans"]:
            assert mask[near].any()
            checked += 1
    assert checked


def test_small_spans_keep_only_changed_bins(demo_ds):
    """Spans covering < 5% of the plane: the 95% quantile of D is 0, so the mask is every bin with D > 0."""
    row = next(iter_rows(demo_ds, "test"))
    cfg = PartialConfig(segments=1, min_len=0.03, max_len=0.03, seed=1)
    out = partial_row(row, cfg, DEFAULT_STFT, DEFAULT_MASK)
    d = out["diff"].astype(np.float32)
    assert (d > 0).mean() < 0.05
    assert out["mask"].any()
    np.testing.assert_array_equal(out["mask"].astype(bool), d > 0)


def test_same_seed_same_output_other_seed_other_spans(demo_ds, partial_ds, tmp_path):
    again = tmp_path / "again"
    make_partial(demo_ds, again, PartialConfig(segments=2, seed=3), progress=False)
    names = [p.name for p in shard_paths(partial_ds)]
    assert names == [p.name for p in shard_paths(again)] == [p.name for p in shard_paths(demo_ds)]
    for a, b in zip(shard_paths(partial_ds), shard_paths(again)):
        ta, tb = pq.read_table(a), pq.read_table(b)
        assert ta.equals(tb), a.name
    other = partial_row(next(iter_rows(demo_ds, "test")), PartialConfig(segments=2, seed=4), DEFAULT_STFT, DEFAULT_MASK)
    first = next(r for r in _rows(partial_ds) if r["spans"])
    assert other["id"] == first["id"] and other["spans"] != first["spans"]


def test_bonafide_rows_and_loaders(partial_ds, demo_ds):
    rows = _rows(partial_ds, "train")
    bona = [r for r in rows if r["vocoder"] == "bonafide"]
    utts = {r["utt_id"] for r in iter_rows(demo_ds, "train", ["utt_id"])}
    assert {r["utt_id"] for r in bona} == utts and len(bona) == len(utts)
    for r in bona:
        assert r["spans"] == [] and not any(r["frame_labels"]) and not r["mask"].any()
        assert r["spoof_audio"]["bytes"] == r["real_audio"]["bytes"]
    cfg = json.loads((partial_ds / "build.json").read_text())
    assert cfg["partial"]["segments"] == 2 and cfg["stft"]["hop_length"] == 128
    summary = json.loads((partial_ds / "summary.json").read_text())
    assert summary["rows_out"] == sum(pq.ParquetFile(p).metadata.num_rows for p in shard_paths(partial_ds))
    # the benchmark's truth loader reads it like any dataset (bona fide rows have empty masks)
    from benchmark.score import load_truth

    truth = load_truth(partial_ds, "test")
    assert any(not m.any() for m in truth.masks.values())
    meta = json.loads(pq.ParquetFile(shard_paths(partial_ds)[0]).schema_arrow.metadata[b"huggingface"])
    assert meta["info"]["features"]["frame_labels"]["feature"]["dtype"] == "float32"


@pytest.mark.parametrize("args, needle", [
    (["--segments", "0"], "--segments"),
    (["--min-len", "2", "--max-len", "1"], "--min-len"),
])
def test_cli_bad_parameters_exit_2(demo_ds, tmp_path, capsys, args, needle):
    from annotate.cli import main

    out = tmp_path / "x"
    assert main(["partial", str(demo_ds), "--out", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_rejects_a_partial_input(partial_ds, tmp_path, capsys):
    from annotate.cli import main

    assert main(["partial", str(partial_ds), "--out", str(tmp_path / "y"), "--no-progress"]) == 2
    assert "already a partially spoofed dataset" in capsys.readouterr().err
