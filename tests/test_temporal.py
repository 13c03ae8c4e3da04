"""The temporal track: metrics with known answers, scoring/validation of 1-D and T-F maps, leaderboard, analysis."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from annotate.core.dataset import iter_rows
from annotate.core.submission import SubmissionWriter, write_submission
from benchmark.cli import main
from benchmark.stats import BootstrapConfig
from benchmark.temporal import (
    auc_eer,
    edge_frames,
    pooled_scores,
    segments,
    utterance_scores,
)

BOOT = BootstrapConfig(resamples=50)


def _truth(n=200, spans=((40, 90), (130, 160))):
    t = np.zeros(n, bool)
    for a, b in spans:
        t[a:b] = True
    return t


def test_oracle_map_has_eer_0_auc_100_iou_100():
    t = _truth()
    inner = ~edge_frames(t.size, t.size * 128, 128, 16000)
    s = utterance_scores(t.astype(float), t, inner)
    for k in ("AUC", "AUC inner"):
        assert s[k] == 100.0
    for k in ("EER", "EER inner"):
        assert s[k] == 0.0
    for thr in (0.3, 0.5, 0.7):
        assert s[f"IoU@{thr}"] == 100.0 and s[f"F1@{thr}"] == 100.0 and s[f"IoU@{thr} inner"] == 100.0


def test_constant_map_has_auc_50_and_empty_binarisation():
    t = _truth()
    s = utterance_scores(np.full(t.size, 3.0), t, np.ones(t.size, bool))
    assert s["AUC"] == 50.0 and s["EER"] == 50.0
    assert s["IoU@0.5"] == 0.0 and s["F1@0.3"] == 0.0


def test_inverted_map_and_known_values():
    t = _truth()
    s = utterance_scores(-t.astype(float), t, np.ones(t.size, bool))
    assert s["AUC"] == 0.0 and s["EER"] == 100.0
    # positives 0.9 and 0.4 against negatives 0.1, 0.5, 0.3: 5 of 6 pairs ordered; the miss rate (1/2 -> 0)
    # crosses the false-alarm rate at 1/3, where 0.4 is accepted
    auc, eer = auc_eer(np.array([0.1, 0.5, 0.3, 0.9, 0.4]), np.array([0, 0, 0, 1, 1], bool))
    assert auc == pytest.approx(100 * 5 / 6) and eer == pytest.approx(100 / 3)
    # a map that is half right: predicted frames 40..64 of the 40..89 span -> IoU = 25/50... after min-max
    h = np.zeros(200)
    h[40:65] = 1.0
    s = utterance_scores(h, _truth(spans=((40, 90),)), np.ones(200, bool))
    assert s["IoU@0.5"] == pytest.approx(50.0) and s["F1@0.5"] == pytest.approx(100 * 2 * 25 / 75)


def test_bonafide_rows_are_undefined_and_edges_are_100ms():
    s = utterance_scores(np.random.default_rng(0).random(100), np.zeros(100, bool), np.ones(100, bool))
    assert all(np.isnan(v) for v in s.values())
    e = edge_frames(200, 200 * 128, 128, 16000)
    # frames centred before 1600 samples (0.1 s at 16 kHz, i.e. frames 0..12) or in the last 0.1 s
    assert e[:13].all() and not e[13] and e[-12:].all() and not e[-13]


def test_segments_any_spoof_and_mean_score():
    h = np.arange(10, dtype=float)
    t = np.zeros(10, bool)
    t[4] = True
    score, lab = segments(h, t, 128, 16000, 20)  # 320 samples: frames centred at 0, 128, 256 share segment 0
    assert score.tolist() == [1, 3.5, 6, 8.5] and lab.tolist() == [False, True, False, False]


def test_pooled_oracle_is_perfect_and_random_near_50():
    rng = np.random.default_rng(0)
    truths = [_truth(), np.zeros(150, bool), _truth(180, ((0, 60),))]
    oracle = pooled_scores([t.astype(float) for t in truths], truths, 128, 16000, BOOT)
    assert oracle["pooled AUC"]["mean"] == 100.0 and oracle["pooled EER"]["mean"] == 0.0
    assert all(oracle[f"segEER {r}ms"]["mean"] == 0.0 for r in (20, 40, 80, 160, 320, 640))
    noise = pooled_scores([rng.random(t.size) for t in truths], truths, 128, 16000, BOOT)
    assert 35 < noise["pooled AUC"]["mean"] < 65
    lo, hi = noise["pooled AUC"]["ci"]
    assert lo <= noise["pooled AUC"]["mean"] <= hi


# ----------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def part(demo_ds, tmp_path_factory):
    from annotate.pipeline.partial import PartialConfig, make_partial

    root = tmp_path_factory.mktemp("temporal")
    ds = root / "part"
    make_partial(demo_ds, ds, PartialConfig(segments=1, seed=0), progress=False)
    rows = list(iter_rows(ds, "test", ["id", "frame_labels", "mask"]))
    with SubmissionWriter(root / "oracle.parquet", {"method": "oracle"}, ndim=1) as w:
        for r in rows:
            w.write(r["id"], (np.asarray(r["frame_labels"]) > 0).astype(np.float32))
    # the same oracle as a T-F map (constant over frequency)
    write_submission(root / "oracle_tf.parquet", [r["id"] for r in rows],
                     [np.repeat((np.asarray(r["frame_labels"]) > 0).astype(np.float32)[:, None], 257, 1) for r in rows],
                     {"method": "oracle tf"})
    return ds, root, rows


def test_score_1d_oracle_via_cli(part, capsys):
    ds, root, _ = part
    out = root / "res" / "oracle.json"
    assert main(["score", str(root / "oracle.parquet"), "--dataset", str(ds), "--bootstrap", "100", "-o", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["track"] == "temporal" and r["ranking_metric"] == "AUC"
    assert r["overall"]["AUC"]["mean"] == 100.0 and r["overall"]["EER"]["mean"] == 0.0
    assert r["overall"]["IoU@0.5"]["mean"] == 100.0 and r["overall"]["segEER 20ms"]["mean"] == 0.0
    bona = r["per_vocoder"]["bonafide"]["AUC"]
    assert bona["n"] == 0 and bona["n_undefined"] == 5  # bona fide rows: undefined per utterance
    assert "5 temporal map(s) are constant: bonafide__" in capsys.readouterr().err  # the oracle is 0 on them


def test_tf_map_scored_on_the_temporal_track_matches_1d(part, tmp_path):
    ds, root, _ = part
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["score", str(root / "oracle.parquet"), "--dataset", str(ds), "--bootstrap", "100", "-o", str(a)]) == 0
    assert main(["score", str(root / "oracle_tf.parquet"), "--dataset", str(ds), "--bootstrap", "100", "--track", "temporal",
                 "-o", str(b)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["overall"] == rb["overall"]


def test_invalid_temporal_submissions_exit_2(part, tmp_path, capsys, demo_ds):
    ds, root, rows = part
    bad = tmp_path / "short.parquet"
    with SubmissionWriter(bad, ndim=1) as w:
        for r in rows:
            w.write(r["id"], np.zeros(len(r["frame_labels"]) - 1, np.float32))
    assert main(["validate", str(bad), "--dataset", str(ds)]) == 2
    err = capsys.readouterr().err
    assert "wrong shape" in err and f"expected {len(rows[0]['frame_labels'])} frames" in err
    # a dataset without frame_labels: one clear line
    assert main(["score", str(root / "oracle.parquet"), "--dataset", str(demo_ds), "--bootstrap", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert "annotate partial" in err and len(err.splitlines()) == 1


def test_leaderboard_shows_the_two_tracks_separately(part, capsys):
    ds, root, rows = part
    res = root / "res_lb"
    assert main(["score", str(root / "oracle.parquet"), "--dataset", str(ds), "--bootstrap", "100", "-o", str(res / "t.json")]) == 0
    assert main(["score", str(root / "oracle_tf.parquet"), "--dataset", str(ds), "--bootstrap", "100", "--track", "tf",
                 "-o", str(res / "tf.json")]) == 0
    capsys.readouterr()
    assert main(["leaderboard", str(res), "--bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    tf, temporal = out.split("## Temporal track")
    assert "## Time-frequency track" in tf and " | oracle tf | " in tf and "Ranked by mean IoU" in tf
    lines = [ln for ln in temporal.splitlines() if ln.startswith("| ")]
    assert lines[0].count("| AUC |") == 1 and "pooled AUC" in lines[0] and "segEER 640ms" in lines[0]
    assert lines[1].startswith("| 1 | oracle |")
    names = [ln.split("|")[2].strip() for ln in lines[1:]]
    assert {"chance: uniform random", "chance: smoothed random", "chance: spoof energy"} <= set(names)
    assert "oracle tf" not in names


def test_analyse_on_a_partial_demo(part, capsys):
    ds, root, _ = part
    out = root / "analysis"
    assert main(["analyse", str(root / "oracle.parquet"), "--dataset", str(ds), "-o", str(out)]) == 0
    s = json.loads((out / "analysis.json").read_text())
    assert s["bonafide"]["n"] > 0 and s["spoof"]["n"] > 0
    assert s["spoof"]["peak_in_spoof_share"] == 1.0  # the oracle peaks inside the spoofed frames
    assert s["bonafide"]["peak"]["mean"] == 0.0 and s["spoof"]["peak"]["mean"] == 1.0
    assert s["utterance_auc"]["peak"] == 100.0
    assert 0 <= s["spoof"]["near_boundary_frame_share"] <= 1
    assert set(s["per_vocoder"]) >= {"bonafide", "griffinlim"}
    png = (out / "analysis.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    n = sum(1 for _ in (out / "per_utterance.jsonl").open())
    assert n == s["n_utterances"]
    assert "splice boundary" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- detector side


def _tiny_detector_cfg():
    from dataclasses import replace

    from training.detector.config import preset

    cfg = preset("small")
    fe = replace(cfg.frontend, conv_layers=((8, 10, 5),) + ((8, 3, 2),) * 4 + ((8, 2, 2),) * 2, embed_dim=32,
                 num_heads=2, ff_dim=32, pos_conv_kernel=8, pos_conv_groups=2)
    be = replace(cfg.backend, res_channels=(1, 4, 4, 8, 8, 8, 8), proj_dim=24, gat_dim=16, hs_dims=(8, 8))
    return replace(cfg, frontend=fe, backend=be, crop=8000)


def test_partial_rows_as_detector_items(part):
    from annotate.core.audio import decode_bytes
    from training.detector.data import AudioStore, index_split

    ds, _, rows = part
    items = index_split(ds, "test")
    assert [it.id for it in items] == [r["id"] for r in rows]  # one item per row, no extra reals
    for it, r in zip(items, rows):
        assert it.label == int(any(v > 0 for v in r["frame_labels"]))
        assert (it.vocoder == "bonafide") == (it.label == 0)
    store = AudioStore(ds, "test")
    spoofed = next(it for it in items if it.label == 1)
    row = next(iter_rows(ds, "test", ["id", "spoof_audio"]))
    first = items[0]
    assert first.id == row["id"]
    np.testing.assert_array_equal(store.wave(first), decode_bytes(row["spoof_audio"]["bytes"])[0])
    assert store.wave(spoofed).size > 0


def test_explain_gradcam_temporal_writes_scoreable_1d_maps(part, tmp_path, capsys):
    import pyarrow.parquet as pq

    from baselines.cli import main as explain
    from training.detector.config import TrainConfig
    from training.detector.train import train

    ds, _, rows = part
    det = train(ds, tmp_path / "det", _tiny_detector_cfg(),
                TrainConfig(steps=2, batch_size=2, lr=5e-4, seed=0, save_every=2, precise_bn_batches=1), progress=False)
    sub = tmp_path / "gradcam_t.parquet"
    assert explain(["--method", "gradcam", "--temporal", "--detector", str(det), "--dataset", str(ds), "-o", str(sub),
                    "--no-progress"]) == 0
    t = pq.read_table(sub)
    htype = t.schema.field("heatmap").type
    assert pa.types.is_list(htype) and htype.value_type == pa.float32()  # 1-D: list<float>
    maps = dict(zip(t.column("id").to_pylist(), t.column("heatmap").to_pylist()))
    for r in rows:
        assert len(maps[r["id"]]) == len(r["frame_labels"]) and min(maps[r["id"]]) >= 0  # ReLU'd, on the frame grid
    assert main(["score", str(sub), "--dataset", str(ds), "--bootstrap", "100"]) == 0
    assert "gradcam on part/test" in capsys.readouterr().out
    assert explain(["--method", "energy", "--temporal", "--dataset", str(ds), "-o", str(tmp_path / "e.parquet"),
                    "--no-progress"]) == 2
    assert "--temporal" in capsys.readouterr().err
