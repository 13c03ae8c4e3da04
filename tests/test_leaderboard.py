"""Leaderboard: ranking by IoU, chance rows computed when missing, md/csv/html formats."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from benchmark.chance import CHANCE_METHODS, chance_heatmap, chance_result
from benchmark.cli import main
from benchmark.score import iter_split, score_submission, write_result
from benchmark.stats import BootstrapConfig
from benchmark.submission import write_submission
from benchmark.synthetic import write_dataset

BOOT = BootstrapConfig(resamples=50)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A dataset and a results folder with an oracle and a random method."""
    root = tmp_path_factory.mktemp("lb")
    ds = write_dataset(root / "ds", n_per_vocoder=3, with_audio=False, frames=24, seed=3)
    rows = list(iter_split(ds, "test", ["id", "mask", "diff"], arrays=("mask", "diff")))
    ids = [r["id"] for r in rows]
    write_submission(root / "oracle.parquet", ids, [r["diff"].astype(np.float32) for r in rows], {"method": "oracle <b>"})
    rng = np.random.default_rng(0)
    write_submission(root / "rand.parquet", ids, [rng.random(r["mask"].shape) for r in rows], {"method": "noise"})
    res = root / "results"
    for name in ("oracle", "rand"):
        write_result(score_submission(root / f"{name}.parquet", ds, boot=BOOT), res / f"{name}.json")
    (res / "notes.json").write_text(json.dumps({"unrelated": True}))  # not a result: skipped
    return ds, res


def lb(res, fmt, capsys, *extra):
    rc = main(["leaderboard", str(res), "--format", fmt, "--bootstrap", "100", *extra])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_markdown_ranks_by_iou_with_chance_rows(results, capsys):
    _, res = results
    md = lb(res, "md", capsys)
    assert "Ranked by mean IoU" in md
    table = [line for line in md.splitlines() if line.startswith("| ")][1:]
    names = [line.split(" | ")[1] for line in table]
    assert names[0] == "oracle <b>" and len(names) == 5
    assert {f"chance: {m}" for m in CHANCE_METHODS} <= set(names)
    ious = [float(line.split(" | ")[4 + 2].split(" ")[0]) for line in table]  # rank|method|kind|n|GDice|F1|IoU
    assert ious == sorted(ious, reverse=True)
    assert "[" in table[0] and "]" in table[0]  # CIs shown


def test_csv_has_means_and_cis(results, capsys):
    _, res = results
    rows = list(csv.DictReader(io.StringIO(lb(res, "csv", capsys))))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    for r in rows:
        assert float(r["IoU_lo"]) <= float(r["IoU"]) <= float(r["IoU_hi"])
    assert rows[0]["method"] == "oracle <b>" and float(rows[0]["IoU"]) > 90


def test_html_is_one_static_self_contained_page(results, capsys, tmp_path):
    _, res = results
    out = tmp_path / "lb.html"
    lb(res, "html", capsys, "-o", str(out))
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "http" not in page and "src=" not in page and "<link" not in page
    assert "oracle &lt;b&gt;" in page and "chance: spoof energy" in page and 'class="chance"' in page


def test_saved_chance_rows_are_reused_without_a_dataset(results, capsys, tmp_path):
    ds, res = results
    folder = tmp_path / "res"
    folder.mkdir()
    (folder / "rand.json").write_text((res / "rand.json").read_text())
    lb(folder, "md", capsys, "--save-chance")
    saved = sorted(p.name for p in folder.glob("chance_*.json"))
    assert saved == ["chance_smoothed_random.json", "chance_spoof_energy.json", "chance_uniform_random.json"]
    data = json.loads((folder / "rand.json").read_text())
    data["dataset"] = "/nonexistent"  # no dataset needed once chance rows exist
    (folder / "rand.json").write_text(json.dumps(data))
    assert "chance: uniform random" in lb(folder, "md", capsys)


def test_missing_dataset_for_chance_rows_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{broken")
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "invalid JSON" in capsys.readouterr().err
    (tmp_path / "x.json").unlink()
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "pass --dataset" in capsys.readouterr().err


def test_chance_rows_are_seeded_per_id(results):
    ds, _ = results
    a = chance_heatmap("uniform random", "id_1", (5, 257), seed=0)
    assert np.array_equal(a, chance_heatmap("uniform random", "id_1", (5, 257), seed=0))
    assert not np.array_equal(a, chance_heatmap("uniform random", "id_2", (5, 257), seed=0))
    r1 = chance_result("smoothed random", ds, seed=1, boot=BOOT)
    r2 = chance_result("smoothed random", ds, seed=1, boot=BOOT)
    assert r1["overall"] == r2["overall"] and r1["kind"] == "chance"
