"""The project's real-speech development corpus: Debian's recorded Asterisk prompts (7 speakers, 4 languages)
re-synthesised by `annotate resynth`, then built by `annotate build`, split by speaker.

Needs Debian packages (not part of CI)::

    apt-get install ffmpeg asterisk-core-sounds-{es,fr,it,ru}-g722 asterisk-prompt-fr-armelle \\
        asterisk-prompt-es-co asterisk-prompt-it-menardi-wav

Then::

    python tools/devcorpus.py --work runs/devcorpus --workers 2        # all prompts (~3400 reals)
    python tools/devcorpus.py --work runs/devcorpus --per-speaker 300  # a seeded subset per speaker

writes ``WORK/reals/{speaker}/*.wav`` (decoded by ffmpeg, 16 kHz mono), ``WORK/corpus`` (the resynth
output), ``WORK/ds`` (the dataset), ``WORK/figures/{vocoder}_{speaker}.png`` (Fig. 1 of a row per vocoder and test speaker) and
``WORK/report.json`` (rows, hours, rejects by reason, alignment error against truth.json per vocoder). Each
step is skipped when its output is complete, so a rerun resumes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# speaker -> (Debian package, file extension): G.722 packages are 16 kHz wideband; the prompt packages 8 kHz
SPEAKERS = {
    "es-allison": ("asterisk-core-sounds-es-g722", ".g722"),
    "fr-june": ("asterisk-core-sounds-fr-g722", ".g722"),
    "it-carlo": ("asterisk-core-sounds-it-g722", ".g722"),
    "ru-ivrvoice": ("asterisk-core-sounds-ru-g722", ".g722"),
    "fr-armelle": ("asterisk-prompt-fr-armelle", ".gsm"),
    "es-co": ("asterisk-prompt-es-co", ".gsm"),
    "it-menardi": ("asterisk-prompt-it-menardi-wav", ".wav"),
}
# held-out speakers: one wideband and one narrowband voice for test, one wideband voice for dev
TEST_SPEAKERS = ("it-carlo", "fr-armelle")
DEV_SPEAKERS = ("ru-ivrvoice",)
VOCODERS = "world,griffinlim,mp3,opus"


def package_files(package: str, ext: str) -> list[Path]:
    """The audio files a Debian package installed (``dpkg -L``)."""
    r = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"devcorpus: package {package} is not installed: apt-get install {package}")
    return sorted(Path(p) for p in r.stdout.split() if p.endswith(ext) and Path(p).is_file())


def decode_all(work: Path, per_speaker: int | None, seed: int) -> Path:
    """Decode every chosen prompt to ``work/reals/{speaker}/{relative path}.wav`` (16 kHz mono PCM) with ffmpeg."""
    reals = work / "reals"
    marker = reals / ".complete"
    want = json.dumps({"per_speaker": per_speaker, "seed": seed, "speakers": sorted(SPEAKERS)})
    if marker.is_file() and marker.read_text() == want:
        return reals
    if shutil.which("ffmpeg") is None:
        sys.exit("devcorpus: ffmpeg not found: apt-get install ffmpeg")
    jobs = []
    for spk, (pkg, ext) in SPEAKERS.items():
        files = package_files(pkg, ext)
        if per_speaker is not None and len(files) > per_speaker:
            pick = np.random.default_rng([seed, sum(map(ord, spk))]).choice(len(files), per_speaker, replace=False)
            files = [files[i] for i in sorted(pick)]
        common = Path(*Path(files[0]).parts[:6])  # /usr/share/asterisk/sounds/<voice folder>
        for f in files:
            rel = f.relative_to(common) if f.is_relative_to(common) else Path(f.name)
            dest = reals / spk / rel.with_suffix(".wav")
            jobs.append((f, dest))

    wanted = {dest for _, dest in jobs}
    for old in reals.rglob("*.wav") if reals.is_dir() else []:  # files of an earlier selection
        if old not in wanted:
            old.unlink()

    def run(job: tuple[Path, Path]) -> str | None:
        """Decode one file; returns its path if ffmpeg cannot (a few prompt files are corrupt)."""
        src, dest = job
        if dest.is_file():
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.stem + ".tmp.wav")
        r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-ac", "1", "-ar", "16000",
                            "-c:a", "pcm_s16le", str(tmp)], capture_output=True)
        if r.returncode != 0:
            tmp.unlink(missing_ok=True)
            return str(src)
        tmp.replace(dest)
        return None

    from tqdm import tqdm

    with ThreadPoolExecutor(4) as ex:
        failed = [f for f in tqdm(ex.map(run, jobs), total=len(jobs), desc="ffmpeg decode", unit="file") if f]
    (work / "ffmpeg_failed.txt").write_text("".join(f + "\n" for f in failed))
    marker.write_text(want)
    return reals


def annotate(*args: str) -> None:
    cmd = [sys.executable, "-m", "annotate.cli", *args]
    print("$", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def alignment_report(corpus: Path, ds: Path, sample_rate: int) -> dict:
    """Per vocoder: the build's offset against the truth file's lag (median |error| in ms, share within 2 ms)."""
    from annotate.core.dataset import read_table

    truth = json.loads((corpus / "truth.json").read_text())
    rows = read_table(ds, columns=["id", "offset", "vocoder"]).to_pylist()
    out = {}
    for voc in sorted({r["vocoder"] for r in rows}):
        err = np.array([r["offset"] - truth[r["id"]] for r in rows if r["vocoder"] == voc], dtype=float)
        ms = np.abs(err) * 1000 / sample_rate
        out[voc] = {"pairs": int(err.size), "median_abs_error_ms": round(float(np.median(ms)), 3),
                    "within_2ms": round(float(np.mean(ms <= 2.0)), 4),
                    "within_one_hop": round(float(np.mean(np.abs(err) <= 128)), 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("runs/devcorpus"), help="working folder (default runs/devcorpus)")
    ap.add_argument("--per-speaker", type=int, default=None, help="at most this many prompts per speaker (seeded)")
    ap.add_argument("--vocoders", default=VOCODERS)
    ap.add_argument("--trim-edges", type=float, default=0.5, help="share of spoofs with trimmed edge silence (default 0.5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    if a.per_speaker is not None and a.per_speaker < 1:
        ap.error("--per-speaker must be >= 1")
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    reals = decode_all(work, a.per_speaker, a.seed)
    corpus, ds, figs = work / "corpus", work / "ds", work / "figures"
    annotate("resynth", "--real-root", str(reals), "--out", str(corpus), "--vocoders", a.vocoders,
             "--trim-edges", str(a.trim_edges), "--seed", str(a.seed), "--workers", str(a.workers),
             "--test-speakers", ",".join(TEST_SPEAKERS), "--dev-speakers", ",".join(DEV_SPEAKERS))
    annotate("build", "--source", "librisevoc", "--root", str(corpus), "--out", str(ds), "--workers", str(a.workers))
    rs = json.loads((corpus / "summary.json").read_text())
    bs = json.loads((ds / "summary.json").read_text())
    report = {
        "ffmpeg_failed": (work / "ffmpeg_failed.txt").read_text().split(),
        "resynth": {k: rs[k] for k in ("utterances", "spoofs", "hours_real", "rejects", "rejects_by_reason",
                                       "speakers_per_split", "utterances_per_split", "cpu_seconds")},
        "build": {k: bs[k] for k in ("rows_out", "rows_per_split", "hours_audio", "rejects", "rejects_by_reason")},
        "alignment": alignment_report(corpus, ds, 16000),
    }
    figs.mkdir(exist_ok=True)
    from annotate.core.dataset import read_table

    rows = read_table(ds, columns=["id", "vocoder", "split", "speaker", "num_samples"]).to_pylist()
    for voc in sorted({r["vocoder"] for r in rows}):
        for spk in TEST_SPEAKERS:
            cands = sorted((r for r in rows if r["vocoder"] == voc and r["speaker"] == spk),
                           key=lambda r: (-r["num_samples"], r["id"]))
            pick = cands[len(cands) // 4]["id"]  # a longer-than-typical test utterance
            png = figs / f"{voc}_{spk}.png"
            annotate("show", str(ds), "--id", pick, "-o", str(png))
            report.setdefault("figures", {}).setdefault(voc, {})[spk] = {"id": pick, "png": str(png)}
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
