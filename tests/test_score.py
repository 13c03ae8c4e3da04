"""End-to-end scoring on small datasets: oracle vs chance, per-utterance consistency, key files, faithfulness."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from annotate.core.audio import decode_bytes
from benchmark.cli import main
from benchmark.faithfulness import faithfulness
from benchmark.localisation import localisation_scores
from benchmark.metrics import segmentation_scores
from benchmark.score import iter_split, score_submission
from benchmark.stats import BootstrapConfig
from benchmark.submission import heatmaps_to_arrow, write_submission
from benchmark.synthetic import write_dataset

BOOT = BootstrapConfig(resamples=100, seed=0)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("score") / "ds", n_per_vocoder=3, seconds=0.5, seed=2)


@pytest.fixture(scope="module")
def rows(ds):
    return list(iter_split(ds, "test", ["id", "vocoder", "mask", "diff", "spoof_audio", "real_audio"], arrays=("mask", "diff")))


def random_sub(rows, path, seed=0):
    rng = np.random.default_rng(seed)
    maps = [rng.random(r["mask"].shape, dtype=np.float32) for r in rows]
    write_submission(path, [r["id"] for r in rows], maps, {"method": "uniform", "seed": seed})
    return maps


def test_oracle_beats_random_and_means_match_direct_metrics(ds, rows, tmp_path):
    write_submission(tmp_path / "oracle.parquet", [r["id"] for r in rows], [r["diff"].astype(np.float32) for r in rows], {"method": "oracle"})
    oracle = score_submission(tmp_path / "oracle.parquet", ds, boot=BOOT)
    maps = random_sub(rows, tmp_path / "rand.parquet")
    rand = score_submission(tmp_path / "rand.parquet", ds, boot=BOOT)
    assert oracle["overall"]["IoU"]["mean"] > 95 and oracle["overall"]["AUC"]["mean"] > 99
    assert rand["overall"]["IoU"]["mean"] < 6 and 40 < rand["overall"]["AUC"]["mean"] < 60
    direct = [{**segmentation_scores(h, r["mask"]), **localisation_scores(h, r["mask"])} for h, r in zip(maps, rows)]
    for m in ("GDice", "F1", "IoU", "FBound", "SSIM", "AUC", "RMA", "PG"):
        assert rand["overall"][m]["mean"] == pytest.approx(np.mean([d[m] for d in direct]))
    hifi = [d["IoU"] for d, r in zip(direct, rows) if r["vocoder"] == "hifigan"]
    assert rand["per_vocoder"]["hifigan"]["IoU"]["mean"] == pytest.approx(np.mean(hifi))
    assert rand["method"] == {"method": "uniform", "seed": 0} and rand["name"] == "uniform"
    for stat in rand["per_vocoder"]["melgan"].values():
        lo, hi = stat["ci"]
        assert lo <= stat["mean"] <= hi


def test_cli_writes_strict_json_and_table(ds, rows, tmp_path, capsys):
    random_sub(rows, tmp_path / "s.parquet", seed=1)
    out = tmp_path / "res" / "r.json"
    rc = main(["score", str(tmp_path / "s.parquet"), "--dataset", str(ds), "-o", str(out), "--bootstrap", "100", "--name", "my method"])
    printed = capsys.readouterr().out
    assert rc == 0 and "my method" in printed and "IoU" in printed and "hifigan" in printed
    result = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert result["name"] == "my method" and result["n_utterances"] == len(rows) and result["ranking_metric"] == "IoU"
    assert set(result["per_vocoder"]) == {"melgan", "hifigan"} and result["bootstrap"]["resamples"] == 100


def test_key_file_replaces_dataset_masks(ds, rows, tmp_path, capsys):
    random_sub(rows, tmp_path / "s.parquet")
    keyed_masks = [np.roll(r["mask"], 40, axis=1) for r in rows]
    key = tmp_path / "key.parquet"
    pq.write_table(pa.table({"id": [r["id"] for r in rows], "mask": heatmaps_to_arrow(keyed_masks, "uint8")}), key)
    # the oracle for the key is the rolled diff: perfect against the key, not against the dataset
    write_submission(tmp_path / "o.parquet", [r["id"] for r in rows], [np.roll(r["diff"].astype(np.float32), 40, axis=1) for r in rows])
    with_key = score_submission(tmp_path / "o.parquet", ds, key=key, boot=BOOT)
    without = score_submission(tmp_path / "o.parquet", ds, boot=BOOT)
    assert with_key["truth"] == "key file key.parquet" and with_key["overall"]["IoU"]["mean"] > 95
    assert without["overall"]["IoU"]["mean"] < 50
    pq.write_table(pa.table({"id": [r["id"] for r in rows[1:]], "mask": heatmaps_to_arrow(keyed_masks[1:], "uint8")}), key)
    rc = main(["score", str(tmp_path / "s.parquet"), "--dataset", str(ds), "--key", str(key)])
    err = capsys.readouterr().err
    assert rc == 2 and rows[0]["id"] in err and "no usable truth mask" in err


def test_withheld_masks_need_a_key(ds, rows, tmp_path, capsys):
    shard = next((ds / "data").glob("test-*.parquet"))
    hidden = tmp_path / "hidden"
    (hidden / "data").mkdir(parents=True)
    pq.write_table(pq.read_table(shard).drop_columns(["mask", "diff"]), hidden / "data" / shard.name)
    random_sub(rows, tmp_path / "s.parquet")
    rc = main(["score", str(tmp_path / "s.parquet"), "--dataset", str(hidden)])
    err = capsys.readouterr().err
    assert rc == 2 and "withholds its masks" in err and "--key" in err


class EnergyDetector(torch.nn.Module):
    """Toy detector: spoof logit grows with high-band (> 2 kHz) magnitude."""

    def forward(self, x):
        from annotate.core.spectral import stft

        z = stft(x).abs()[:, :, 64:].mean(dim=(1, 2)) * 50 - 1.0
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_faithfulness_through_the_scorer(ds, rows, tmp_path):
    from benchmark.metrics import binarise

    write_submission(tmp_path / "o.parquet", [r["id"] for r in rows], [r["diff"].astype(np.float32) for r in rows])
    res = score_submission(tmp_path / "o.parquet", ds, detector=EnergyDetector(), boot=BOOT)
    for m in ("AI", "AD", "AG", "FidIn"):
        assert res["overall"][m]["n"] == len(rows) and 0 <= res["overall"][m]["mean"] <= 100
    direct = []
    for r in rows:
        spoof, _ = decode_bytes(r["spoof_audio"]["bytes"])
        real, _ = decode_bytes(r["real_audio"]["bytes"])
        direct.append(faithfulness(EnergyDetector(), spoof, real, binarise(r["diff"].astype(np.float32))))
    for m in ("AI", "AD", "AG", "FidIn"):
        assert res["overall"][m]["mean"] == pytest.approx(np.mean([d[m] for d in direct]), abs=1e-6)


def test_bad_detector_path_is_a_clear_error(ds, rows, tmp_path, capsys):
    random_sub(rows, tmp_path / "s.parquet")
    rc = main(["score", str(tmp_path / "s.parquet"), "--dataset", str(ds), "--detector", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope" in err and "Traceback" not in err


def test_run_on_a_missing_dataset_is_a_one_line_error(capsys):
    assert main(["run", "--dataset", "x"]) == 2
    err = capsys.readouterr().err
    assert "no shards" in err and len(err.strip().splitlines()) == 1


def test_demo_dataset_random_submission_scores_at_chance(demo_ds, tmp_path, capsys):
    """The lead's demo dataset: a uniform-random submission scores near chance; the leaderboard adds chance rows."""
    rows = list(iter_split(demo_ds, "test", ["id", "mask"], arrays=("mask",)))
    assert rows
    random_sub(rows, tmp_path / "s.parquet", seed=5)
    res = tmp_path / "results"
    assert main(["score", str(tmp_path / "s.parquet"), "--dataset", str(demo_ds), "-o", str(res / "r.json"), "--bootstrap", "100"]) == 0
    result = json.loads((res / "r.json").read_text())
    assert 1.0 < result["overall"]["IoU"]["mean"] < 5.0 and 40 < result["overall"]["AUC"]["mean"] < 60
    capsys.readouterr()
    assert main(["leaderboard", str(res), "--bootstrap", "100"]) == 0
    md = capsys.readouterr().out
    assert "chance: uniform random" in md and "chance: spoof energy" in md and "uniform" in md


def test_worker_pool_gives_identical_results(ds, rows, tmp_path):
    random_sub(rows, tmp_path / "s.parquet", seed=3)
    one = score_submission(tmp_path / "s.parquet", ds, boot=BOOT)
    two = score_submission(tmp_path / "s.parquet", ds, boot=BOOT, workers=2)
    assert one["overall"] == two["overall"] and one["per_vocoder"] == two["per_vocoder"]
