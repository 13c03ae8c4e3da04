"""Issue 17: nothing lost, nothing leaked — up-front option checks, file-system errors as rejects or one line,
empty splits, quiet closed pipes, the withheld test split, row ids, subset scoring, and a regular install."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from annotate.core.dataset import array2d, read_table, shard_paths
from conftest import copy_subset

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["id", "split", "mask", "diff", "spoof_logmag", "offset", "spoof_audio", "real_audio"]


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("bad", [["--quantile", "1.5"], ["--quantile", "0"], ["--sample-rate", "0"], ["--sample-rate", "100"],
                                 ["--rawboost-prob", "2"], ["--shard-size", "0"], ["--augment-copies", "-1"],
                                 ["--workers", "0"], ["--seed", "-1"], ["--augment-copies", "1", "--rawboost-algo", "0"]])
def test_build_options_are_refused_before_out_is_touched(bad, tmp_path, capsys):
    from annotate.cli import main

    out = tmp_path / "never"
    assert main(["build", "--out", str(out), "--no-progress", *bad]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith("annotate build: error: " + bad[0]) or "--augment-copies" in line, line
    assert not out.exists()


def test_other_commands_refuse_bad_numbers_before_any_work(tmp_path, capsys):
    from baselines.cli import main as explain_main
    from benchmark.cli import main as benchmark_main
    from training.cli import main as train_main

    missing = str(tmp_path / "no_ds")
    assert train_main(["detector", "--dataset", missing, "--out", str(tmp_path / "ck"), "--steps", "0"]) == 2
    assert "--steps 0: must be >= 1" in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "ck").exists()
    assert train_main(["segdiff", "--dataset", missing, "--out", str(tmp_path / "sd"), "--lr", "0"]) == 2
    assert "--lr 0.0: must be > 0" in _one_line_error(capsys.readouterr().err)
    assert explain_main(["--method", "random", "--dataset", missing, "-o", str(tmp_path / "s.parquet"), "--limit", "0"]) == 2
    assert "--limit 0: must be >= 1" in _one_line_error(capsys.readouterr().err)
    assert benchmark_main(["score", str(tmp_path / "s.parquet"), "--dataset", missing, "--bootstrap", "50"]) == 2
    assert "--bootstrap 50: use at least 100" in _one_line_error(capsys.readouterr().err)
    assert benchmark_main(["score", str(tmp_path / "s.parquet"), "--dataset", missing, "--workers", "0"]) == 2
    assert "--workers 0" in _one_line_error(capsys.readouterr().err)


def test_detector_steps_is_not_replaced_by_its_default(monkeypatch, tmp_path):
    """`a.steps or 1000` turned an explicit value into the default; an explicit value must reach the config."""
    import training.detector.train as train_mod
    from training.cli import main as train_main

    seen = {}

    def fake_train(dataset, out, cfg, tcfg, **kw):
        seen["tcfg"] = tcfg
        return Path(out)

    monkeypatch.setattr(train_mod, "train", fake_train)
    assert train_main(["detector", "--dataset", str(tmp_path), "--out", str(tmp_path / "ck"), "--steps", "3",
                       "--lr", "0.25", "--batch-size", "2"]) == 0
    assert (seen["tcfg"].steps, seen["tcfg"].lr, seen["tcfg"].batch_size) == (3, 0.25, 2)


# ----------------------------------------------------------------------------------------------- file system


def test_links_the_file_system_cannot_follow_become_rejects(demo_corpus, tmp_path):
    from annotate.sources import read_source

    root = tmp_path / "LibriSeVoc"
    copy_subset(demo_corpus, root, 2)
    voc = root / "world"
    os.symlink("loop_gen.wav", voc / "loop_gen.wav")  # a link to itself: ELOOP
    os.symlink(str(tmp_path / "gone.wav"), voc / "dangling_gen.wav")
    os.symlink("..", voc / "up")  # a directory loop inside a vocoder folder
    os.symlink(".", root / "again")  # ... and one at the corpus level (would look like a vocoder)
    pairs, rejects = read_source("librisevoc", root)
    assert len(pairs) == 6  # the real pairs are all still there
    reasons = {Path(r.path).name: r.reason for r in rejects}
    assert "symlink loop" in reasons["loop_gen.wav"]
    assert reasons["dangling_gen.wav"].startswith("dangling symlink")
    assert reasons["up"].startswith("directory loop") and reasons["again"].startswith("directory loop")


def _build_args(corpus: Path, out: Path) -> list[str]:
    return ["build", "--source", "librisevoc", "--root", str(corpus), "--out", str(out), "--shard-size", "2",
            "--no-progress", "--workers", "1"]


def test_full_disk_is_one_line_and_the_rerun_resumes_to_identical_rows(demo_corpus, tmp_path, monkeypatch, capsys):
    from annotate.pipeline.build import BuildConfig, build
    from annotate.cli import main
    from annotate.core.dataset import ShardWriter

    corpus = tmp_path / "LibriSeVoc"
    copy_subset(demo_corpus, corpus, 2)
    ref = tmp_path / "ref"
    build(BuildConfig(source="librisevoc", root=str(corpus), shard_size=2), ref, progress=False)

    out = tmp_path / "out"
    close, calls = ShardWriter.close, []

    def full_disk(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return close(self, *a, **kw)

    monkeypatch.setattr(ShardWriter, "close", full_disk)
    assert main(_build_args(corpus, out)) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "no space left" in line and "free space and rerun the same command to resume" in line
    assert 0 < len(shard_paths(out)) < len(shard_paths(ref))
    monkeypatch.setattr(ShardWriter, "close", close)
    assert main(_build_args(corpus, out)) == 0
    a, b = read_table(ref, columns=COLUMNS).sort_by("id"), read_table(out, columns=COLUMNS).sort_by("id")
    assert a.num_rows == b.num_rows == 6
    for col in COLUMNS:
        assert a.column(col).equals(b.column(col)), col


def test_unwritable_out_is_one_line(demo_corpus, tmp_path, monkeypatch, capsys):
    from annotate.cli import main
    from annotate.core.storage import Store

    corpus = tmp_path / "LibriSeVoc"
    copy_subset(demo_corpus, corpus, 1)

    def read_only(self, rel=""):
        raise OSError(errno.EROFS, "Read-only file system", self.path(rel))

    monkeypatch.setattr(Store, "makedirs", read_only)
    assert main(_build_args(corpus, tmp_path / "ro")) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "cannot write to" in line and "read-only file system" in line


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_exit_when_the_build_is_killed(demo_corpus, tmp_path):
    corpus = tmp_path / "LibriSeVoc"
    copy_subset(demo_corpus, corpus, 8)
    out = tmp_path / "ds"
    args = [sys.executable, "-m", "annotate.cli", *_build_args(corpus, out)[:-1], "2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            workers = [p for p in _children(proc.pid) if _alive(p)]
            if len(workers) >= 2 and (out / "data").exists() and list((out / "data").glob("*.parquet")):
                break
            time.sleep(0.1)
        assert proc.poll() is None and len(workers) >= 2, "the build ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, not its process group
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)], "workers outlived their parent"
    finally:
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


# ----------------------------------------------------------------------------------------------- closed pipes


def test_closed_stdout_exits_quietly(demo_ds, tmp_path):
    from annotate.core.console import SIGPIPE_EXIT
    from annotate.core.submission import write_submission
    from annotate.cli import main as annotate_main
    from baselines.cli import main as explain_main
    from benchmark.cli import main as benchmark_main
    from training.cli import main as train_main

    for main in (annotate_main, explain_main, benchmark_main, train_main):
        assert hasattr(main, "__wrapped__"), main  # every console script is wrapped by quiet_broken_pipe

    rows = list(read_table(demo_ds, "test", ["id", "mask"]).to_pylist())
    rng = np.random.default_rng(0)
    write_submission(tmp_path / "sub.parquet", [r["id"] for r in rows],
                     [rng.random(array2d(r["mask"]).shape, dtype=np.float32) for r in rows], {"method": "uniform"})
    commands = [["-m", "annotate.cli", "stats", str(demo_ds), "--json"], ["-m", "annotate.cli", "ids", str(demo_ds)],
                ["-m", "benchmark.cli", "score", str(tmp_path / "sub.parquet"), "--dataset", str(demo_ds), "--bootstrap", "0"]]
    for cmd in commands:
        r, w = os.pipe()
        os.close(r)  # the reader is gone before the first write, as with `| head` on a long output
        proc = subprocess.run([sys.executable, *cmd], stdout=w, stderr=subprocess.PIPE, text=True, cwd=REPO)
        os.close(w)
        assert proc.returncode == SIGPIPE_EXIT and proc.stderr == "", (cmd, proc.stderr)


# ----------------------------------------------------------------------------------------------- empty splits


def test_a_split_whose_pairs_are_all_rejected_writes_no_shard(demo_corpus, tmp_path, capsys):
    from datasets import load_dataset

    from annotate.hub.card import render_card
    from annotate.cli import main
    from baselines.cli import main as explain_main
    from benchmark.cli import main as benchmark_main

    corpus = tmp_path / "LibriSeVoc"
    utts = copy_subset(demo_corpus, corpus, 3)
    (corpus / "train.txt").write_text("".join(f"{u}.wav\n" for u in utts[:2]))
    (corpus / "test.txt").write_text(f"{utts[2]}.wav\n")
    for f in corpus.glob(f"*/{utts[2]}_gen.wav"):
        f.write_bytes(b"not audio at all")  # every test pair is rejected
    out = tmp_path / "ds"
    assert main(_build_args(corpus, out)) == 0
    assert "dev, test has no rows" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["empty_splits"] == ["dev", "test"] and summary["rows_per_split"]["test"] == 0
    assert {p.name.split("-")[0] for p in (out / "data").glob("*.parquet")} == {"train"}
    assert all(pq.ParquetFile(p).metadata.num_rows > 0 for p in shard_paths(out))
    ds = load_dataset(str(out), cache_dir=str(tmp_path / "cache"))  # failed on a 0-row test shard
    assert list(ds) == ["train"] and ds["train"].num_rows == 6
    card = render_card(out, tmp_path / "card" / "README.md", figure=False).read_text()
    assert "**Empty splits**: dev, test" in card
    capsys.readouterr()  # datasets' progress bars

    sub = tmp_path / "sub.parquet"
    assert explain_main(["--method", "random", "--dataset", str(out), "--split", "test", "-o", str(sub), "--no-progress"]) == 2
    assert "split 'test'" in _one_line_error(capsys.readouterr().err) and not sub.exists()
    from annotate.core.submission import write_submission

    write_submission(sub, ["world__x"], [np.zeros((4, 257), np.float32)], {"method": "zeros"})
    assert benchmark_main(["score", str(sub), "--dataset", str(out), "--split", "test"]) == 2
    assert "split 'test'" in _one_line_error(capsys.readouterr().err)


# ----------------------------------------------------------------------------------------------- withheld test split


def _rebuild_masks(shard: Path, quantile: float) -> dict[str, np.ndarray]:
    """Every route to a test row's mask from the columns a shard carries (what a submitter could do)."""
    from annotate.core.audio import decode_bytes
    from annotate.core.spectral import MaskConfig, STFTConfig, artifact_mask, stft, threshold

    names = pq.read_schema(shard).names
    t = pq.read_table(shard)
    out = {}
    for k, i in enumerate(t.column("id").to_pylist()):
        if "mask" in names:
            out[i] = array2d(t.column("mask")[k]).astype(bool)
        elif "diff" in names:
            out[i] = threshold(array2d(t.column("diff")[k]).astype(np.float32), quantile).astype(bool)
        elif "real_audio" in names:
            real, sr = decode_bytes(t.column("real_audio")[k].as_py()["bytes"])
            spoof, _ = decode_bytes(t.column("spoof_audio")[k].as_py()["bytes"])
            stft_cfg = STFTConfig(sample_rate=sr)
            mask, _ = artifact_mask(np.abs(stft(spoof, stft_cfg)), np.abs(stft(real, stft_cfg)), MaskConfig(quantile=quantile))
            out[i] = mask.astype(bool)
    return out


def test_withheld_test_config_carries_nothing_the_masks_can_be_rebuilt_from(demo_ds, tmp_path):
    from annotate.hub.publish import stage_tree

    truth = {r["id"]: array2d(r["mask"]).astype(bool) for r in read_table(demo_ds, "test", ["id", "mask"]).to_pylist()}
    q = json.loads((demo_ds / "build.json").read_text())["mask"]["quantile"]

    def iou(a, b):
        return (a & b).sum() / max((a | b).sum(), 1)

    # the check itself works: from the full test shards every route rebuilds the masks (chance IoU of a 5% mask
    # is ~0.03; from the 16-bit audio the low-energy bins differ a little)
    for shard in shard_paths(demo_ds, "test"):
        for keep in (None, ["id", "spoof_audio", "real_audio"]):
            src = shard
            if keep:
                src = tmp_path / f"only_audio_{shard.name}"
                pq.write_table(pq.read_table(shard, columns=keep), src)
            rebuilt = _rebuild_masks(src, q)
            assert rebuilt.keys() == {i for i in truth if i in rebuilt} and len(rebuilt) > 0
            assert min(iou(m, truth[i]) for i, m in rebuilt.items()) > 0.5

    tree = stage_tree(demo_ds, tmp_path / "tree", withhold=True, key=tmp_path / "key.parquet", figure=False)
    public_test = sorted((tree.root / "data").glob("test-*.parquet"))
    assert public_test
    for shard in public_test:
        names = pq.read_schema(shard).names
        assert not {"mask", "diff", "real_audio"} & set(names) and "spoof_audio" in names
        assert _rebuild_masks(shard, q) == {}
    card = (tree.root / "README.md").read_text()
    assert "LibriTTS" in card and "annotate resynth" in card and "private real" in card


# ----------------------------------------------------------------------------------------------- ids, subsets, CIs


def test_ids_lists_rows_and_the_help_example_is_a_demo_row(demo_ds, capsys):
    from annotate.cli import EXAMPLE_ID, main
    from annotate.sources.demo import DemoConfig, assign_splits, make_speakers, utterance_ids

    assert main(["ids", str(demo_ds), "--split", "test", "--vocoder", "world"]) == 0
    ids = capsys.readouterr().out.split()
    t = read_table(demo_ds, "test", ["id", "vocoder"]).to_pylist()
    assert ids == [r["id"] for r in t if r["vocoder"] == "world"] and ids
    cfg = DemoConfig()  # the default demo the README builds
    utts = assign_splits(cfg, utterance_ids(cfg, make_speakers(cfg)))
    vocoder, utt = EXAMPLE_ID.split("__")
    assert vocoder in cfg.vocoders and utt in utts["test"]
    assert main(["show", str(demo_ds), "--id", "nope__0"]) == 2
    assert f"annotate ids {demo_ds}" in _one_line_error(capsys.readouterr().err)


def test_score_a_subset_and_the_leaderboard_refuses_to_mix_it(demo_ds, tmp_path, capsys):
    from annotate.core.submission import write_submission
    from benchmark.cli import main

    rows = read_table(demo_ds, "test", ["id", "mask"]).to_pylist()
    rng = np.random.default_rng(1)
    maps = [rng.random(array2d(r["mask"]).shape, dtype=np.float32) for r in rows]
    ids = [r["id"] for r in rows]
    write_submission(tmp_path / "part.parquet", ids[:4], maps[:4], {"method": "part"})  # as `explain --limit 4`
    write_submission(tmp_path / "full.parquet", ids, maps, {"method": "full"})
    res = tmp_path / "results"
    assert main(["score", str(tmp_path / "part.parquet"), "--dataset", str(demo_ds)]) == 2  # missing ids, as before
    capsys.readouterr()
    assert main(["score", str(tmp_path / "part.parquet"), "--dataset", str(demo_ds), "--limit", "4",
                 "--bootstrap", "0", "-o", str(res / "part.json")]) == 0
    out = capsys.readouterr().out
    assert "subset: 4 of" in out and "[" not in out.split("\n", 1)[1]  # no CI printed with --bootstrap 0
    part = json.loads((res / "part.json").read_text())
    assert part["subset"]["n"] == 4 and part["n_utterances"] == 4
    (tmp_path / "ids.txt").write_text("\n".join(ids[:4]) + "\n")
    assert main(["score", str(tmp_path / "full.parquet"), "--dataset", str(demo_ds), "--ids", str(tmp_path / "ids.txt"),
                 "--bootstrap", "100", "-o", str(tmp_path / "same.json")]) == 0
    same = json.loads((tmp_path / "same.json").read_text())
    assert same["subset"]["ids_digest"] == part["subset"]["ids_digest"]
    assert same["overall"]["IoU"]["mean"] == part["overall"]["IoU"]["mean"]
    assert main(["score", str(tmp_path / "full.parquet"), "--dataset", str(demo_ds), "--bootstrap", "100",
                 "-o", str(res / "full.json")]) == 0
    assert json.loads((res / "full.json").read_text())["subset"] is None
    capsys.readouterr()
    assert main(["leaderboard", str(res), "--bootstrap", "100"]) == 2
    assert "cannot rank results scored on different rows" in _one_line_error(capsys.readouterr().err)


# ----------------------------------------------------------------------------------------------- version, install


def test_one_package_version_and_a_separate_format_version():
    import tomllib

    import annotate
    from annotate.pipeline.build import BuildConfig

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert annotate.__version__ == pyproject
    assert BuildConfig().version == annotate.FORMAT_VERSION


def test_a_wheel_ships_the_datacards_and_card_runs_from_the_installed_copy(demo_ds, tmp_path):
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("annotate", "training", "baselines", "benchmark"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w", str(wheels)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = wheels.glob("vocmask-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        assert any(n.startswith("annotate/hub/datacards/") and n.endswith("librisevoc.md") for n in z.namelist())
        z.extractall(site)
    card = tmp_path / "card" / "README.md"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import annotate, annotate.cli; "
            "assert annotate.__file__.startswith(sys.argv[1]), annotate.__file__; print(annotate.__version__); "
            "sys.exit(annotate.cli.main(['card', sys.argv[2], '-o', sys.argv[3], '--no-figure']))")
    env = {k: v for k, v in os.environ.items() if k not in ("VOCMASK_DATACARDS", "PYTHONPATH")}
    r = subprocess.run([sys.executable, "-c", code, str(site), str(demo_ds), str(card)], capture_output=True, text=True,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    import tomllib

    assert r.stdout.split()[0] == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert card.exists() and "vocmask" in card.read_text()
