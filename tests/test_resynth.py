"""`annotate resynth`: a parallel corpus from a folder of real speech (issue 16)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from annotate.cli import main as annotate_main

VOCODER_MODULE = '''
import numpy as np

def delay37(wave, sr):
    """A stand-in for a user's neural vocoder: a 37-sample delay and a little noise."""
    rng = np.random.default_rng(0)
    return np.concatenate([np.zeros(37), wave]) + 1e-4 * rng.normal(size=len(wave) + 37)
'''


@pytest.fixture(scope="module")
def real_root(demo_corpus, tmp_path_factory) -> Path:
    """Three speakers' folders (nested, 24 kHz demo speech), a stereo file, and bad files of each kind."""
    root = tmp_path_factory.mktemp("reals") / "speech"
    reals = sorted((demo_corpus / "gt").glob("*.wav"))
    by_spk: dict[str, list[Path]] = {}
    for f in reals:
        by_spk.setdefault(f.stem.split("_")[0], []).append(f)
    for spk in sorted(by_spk)[:3]:
        for f in by_spk[spk][:2]:
            (root / f"spk{spk}" / "session1").mkdir(parents=True, exist_ok=True)
            x, sr = sf.read(f)
            sf.write(root / f"spk{spk}" / "session1" / f"{f.stem[-13:]}.wav", x[: int(1.6 * sr)], sr)
    x, sr = sf.read(reals[-1])
    stereo = np.stack([x[: int(1.2 * sr)], 0.5 * x[: int(1.2 * sr)]], axis=1)
    sf.write(root / f"spk{sorted(by_spk)[0]}" / "stereo.flac", stereo, sr)
    bad = root / "zbad"
    bad.mkdir()
    (bad / "garbage.wav").write_bytes(b"RIFF\x00\x00 not a wave file at all")
    sf.write(bad / "empty.wav", np.zeros(0), 16000)
    sf.write(bad / "short.wav", 0.1 * np.ones(1600), 16000)
    sf.write(bad / "silent.wav", np.zeros(16000), 16000)
    os.symlink(bad / "missing.wav", bad / "dangling.wav")
    (bad / "notes.txt").write_text("not audio: ignored")
    return root


@pytest.fixture(scope="module")
def corpus(real_root, tmp_path_factory) -> Path:
    mod = tmp_path_factory.mktemp("mods")
    (mod / "myvocoder.py").write_text(VOCODER_MODULE)
    sys.path.insert(0, str(mod))
    out = tmp_path_factory.mktemp("corpus") / "resynth"
    try:
        rc = annotate_main(["resynth", "--real-root", str(real_root), "--out", str(out), "--no-progress",
                            "--vocoders", "world,griffinlim,lpc,mp3,opus@0.8,mine=myvocoder:delay37",
                            "--trim-edges", "0.5", "--seed", "3"])
    finally:
        sys.path.remove(str(mod))
    assert rc == 0
    return out


def test_layout_vocoders_and_splits(corpus):
    vocs = ["world", "griffinlim", "lpc", "mp3", "opus", "mine"]
    gts = sorted(p.stem for p in (corpus / "gt").glob("*.wav"))
    assert len(gts) == 7  # 6 mono + 1 stereo mixed down; every bad file left out
    for v in vocs:
        assert sorted(p.name for p in (corpus / v).glob("*.wav")) == [f"{g}_gen.wav" for g in gts], v
    info = sf.info(str(corpus / "gt" / f"{gts[0]}.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert any("stereo" in g for g in gts)
    truth = json.loads((corpus / "truth.json").read_text())
    assert sorted(truth) == sorted(f"{v}__{g}" for v in vocs for g in gts)
    # split lists: every real exactly once, speakers disjoint (the speaker is the first folder)
    lists = {s: (corpus / f"{s}.txt").read_text().split() for s in ("train", "dev", "test")}
    assert sorted(n[:-4] for ns in lists.values() for n in ns) == gts
    spk = {s: {n.split("_")[0] for n in ns} for s, ns in lists.items()}
    assert all(spk.values()) and not (spk["train"] & spk["dev"]) and not (spk["train"] & spk["test"]) and not (spk["dev"] & spk["test"])
    assert json.loads((corpus / "resynth.json").read_text())["vocoders"][-1] == "mine=myvocoder:delay37"


def test_recorded_lags_are_exact(corpus):
    """Codec lags are waveform lags: shifting the real by the recorded lag matches the spoof sample for sample
    (correlation ~1); the callable's known 37-sample delay is recorded as such (minus any trimmed lead)."""
    truth = json.loads((corpus / "truth.json").read_text())
    for key, lag in truth.items():
        voc, uid = key.split("__")
        if voc not in ("mp3", "opus"):
            continue
        x, _ = sf.read(corpus / "gt" / f"{uid}.wav")
        y, _ = sf.read(corpus / voc / f"{uid}_gen.wav")
        lo, n = max(0, -lag), min(len(x), len(y) - lag) - max(0, -lag)
        seg_x, seg_y = x[lo : lo + n], y[lo + lag : lo + lag + n]
        best = np.corrcoef(seg_x, seg_y)[0, 1]
        off = np.corrcoef(x[lo : lo + n - 3], y[lo + lag + 3 : lo + lag + n])[0, 1]
        assert best > 0.9 and best > off, (key, best, off)
    for key, lag in truth.items():
        if key.startswith("mine__"):
            uid = key.split("__")[1]
            y, _ = sf.read(corpus / "mine" / f"{uid}_gen.wav")
            x, _ = sf.read(corpus / "gt" / f"{uid}.wav")
            trimmed = len(x) + 37 - len(y)  # the trim removed this much at the edges
            assert lag == 37 or (trimmed > 0 and lag < 37), (key, lag)


def test_bad_files_become_rejects(corpus):
    rejects = [json.loads(line) for line in (corpus / "rejects.jsonl").read_text().splitlines()]
    reasons = {Path(r["path"]).name: r["reason"] for r in rejects}
    assert reasons["garbage.wav"].startswith("unreadable audio")
    assert reasons["empty.wav"].startswith("empty audio")
    assert reasons["short.wav"].startswith("too short")
    assert reasons["silent.wav"].startswith("silent")
    assert reasons["dangling.wav"].startswith("unreadable path")
    assert "notes.txt" not in reasons
    summary = json.loads((corpus / "summary.json").read_text())
    assert summary["rejects"] == len(rejects) == 5 and summary["utterances"] == 7


def test_build_reads_the_result_and_recovers_the_lags(corpus, tmp_path):
    out = tmp_path / "ds"
    assert annotate_main(["build", "--source", "librisevoc", "--root", str(corpus), "--out", str(out), "--no-progress"]) == 0
    from annotate.core.dataset import read_table

    rows = read_table(out, columns=["id", "offset", "split", "speaker"]).to_pylist()
    truth = json.loads((corpus / "truth.json").read_text())
    assert len(rows) == len(truth)
    err = np.array([r["offset"] - truth[r["id"]] for r in rows])
    assert np.mean(np.abs(err) <= 128) >= 0.95, sorted(zip(np.abs(err), [r["id"] for r in rows]))[-5:]
    codecs = np.array([r["id"].split("__")[0] in ("mp3", "opus") for r in rows])
    assert np.all(np.abs(err[codecs]) <= 2)  # codec lags are recovered to the sample
    lists = {s: {n[:-4] for n in (corpus / f"{s}.txt").read_text().split()} for s in ("train", "dev", "test")}
    assert all(r["id"].split("__")[1] in lists[r["split"]] for r in rows)  # the official split is the speaker split


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.parent.name != ".parts"
            and p.name not in ("summary.json",)}


def test_killed_run_resumes_to_identical_files(real_root, tmp_path):
    args = [sys.executable, "-m", "annotate.cli", "resynth", "--real-root", str(real_root), "--vocoders", "world,mp3",
            "--chunk-size", "1", "--trim-edges", "0.5", "--no-progress"]
    ref = tmp_path / "ref"
    subprocess.run(args + ["--out", str(ref), "--workers", "2"], check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / ".parts").glob("*.json"))) >= 3 if (out / ".parts").exists() else False:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "truth.json").exists()
    r = subprocess.run(args + ["--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not list(out.rglob("*.tmp"))
    assert _digest(out) == _digest(ref)  # same files, same bytes, whatever the worker count or the kill


@pytest.mark.parametrize("bad, message", [
    (["--trim-edges", "2"], "--trim-edges"),
    (["--vocoders", "world,hifigan"], "unknown vocoder 'hifigan'"),
    (["--vocoders", "opus", "--sample-rate", "11025"], "opus cannot encode at 11025 Hz"),
    (["--vocoders", "mp3@1.5"], "compression level"),
    (["--vocoders", "nosuchmodule:fn"], "cannot be imported"),
    (["--workers", "0"], "--workers 0"),
    (["--test-speakers", "nobody"], "nobody"),
])
def test_bad_parameters_are_one_line_before_any_work(real_root, tmp_path, capsys, bad, message):
    out = tmp_path / "never"
    rc = annotate_main(["resynth", "--real-root", str(real_root), "--out", str(out), "--no-progress", *bad])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_other_parameters_are_refused_on_an_existing_corpus(corpus, real_root, capsys):
    rc = annotate_main(["resynth", "--real-root", str(real_root), "--out", str(corpus), "--no-progress",
                        "--vocoders", "world,griffinlim,lpc,mp3,opus@0.8,mine=myvocoder:delay37", "--trim-edges", "0.5",
                        "--seed", "4"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "changed: seed)" in err and len(err.splitlines()) == 1, err  # the folder names are not parameters
