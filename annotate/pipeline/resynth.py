"""`annotate resynth`: a parallel corpus from any folder of real speech (the self-vocoding recipe behind
LibriSeVoc and WaveFake), offline on a CPU.

Every audio file under ``--real-root`` (any rate soundfile reads, stereo mixed down, nested folders) becomes
one real utterance; each vocoder (:mod:`annotate.pipeline.vocoders`) re-synthesises it. The output is a LibriSeVoc-
layout corpus that ``annotate build --source librisevoc --root OUT`` reads with no other option::

    OUT/gt/{ID}.wav                 the real, mono 16-bit PCM at --sample-rate
    OUT/{vocoder}/{ID}_gen.wav      its re-synthesis by that vocoder
    OUT/{train,dev,test}.txt        split lists naming gt files, disjoint by speaker
    OUT/truth.json                  {vocoder}__{ID} -> lag in samples (spoof position - real position)
    OUT/resynth.json  OUT/summary.json  OUT/rejects.jsonl

IDs are LibriTTS-like: ``{speaker}_{rest of the path}`` with the path's folders joined by ``-``; the speaker is
the first folder under ``--real-root`` (a file directly in it is its own speaker). Work is planned in fixed
chunks of files and run by :mod:`annotate.pipeline.jobs` (resumable, any worker count, same bytes whatever the count:
every random draw is seeded by (seed, utterance id, vocoder)).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..core.audio import AudioError, load
from .jobs import JobError, Task, pinned_parameters, run_tasks, stale_tasks
from ..sources.base import Reject, pair_id
from .splits import DEFAULT_FRACTIONS, assign_groups
from ..core.storage import Store
from .vocoders import Vocoder, lag, parse_all

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".snd", ".caf", ".w64", ".rf64")
DEFAULT_VOCODERS = ("world", "griffinlim", "mp3", "opus")
SPLITS = ("train", "dev", "test")


class ResynthError(JobError):
    """A problem with the resynthesis as a whole (one line for the user, exit code 2)."""


@dataclass(frozen=True)
class ResynthConfig:
    """Everything that determines the corpus's content; stored as ``resynth.json`` beside it."""

    real_root: str
    vocoders: tuple[str, ...] = DEFAULT_VOCODERS
    sample_rate: int = 16000
    trim_edges: float = 0.0  # share of spoofs whose leading/trailing silence is trimmed (LibriSeVoc-style)
    trim_top_db: float = 40.0  # silence = this far below the spoof's peak frame
    min_seconds: float = 0.5
    silence_dbfs: float = -60.0  # a real whose RMS is below this is rejected as silent
    seed: int = 0
    chunk_size: int = 16
    dev_speakers: tuple[str, ...] = ()
    test_speakers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.trim_edges <= 1.0:
            problems.append(f"--trim-edges {self.trim_edges}: give a share in [0, 1]")
        if self.sample_rate < 8000 or self.sample_rate > 192000:
            problems.append(f"--sample-rate {self.sample_rate}: give a rate in Hz between 8000 and 192000")
        if self.chunk_size < 1:
            problems.append(f"--chunk-size {self.chunk_size}: give at least 1")
        if self.min_seconds <= 0:
            problems.append(f"--min-seconds {self.min_seconds}: give a positive duration")
        both = set(self.dev_speakers) & set(self.test_speakers)
        if both:
            problems.append(f"speaker(s) {', '.join(sorted(both))} given for both dev and test")
        if problems:
            raise ResynthError("; ".join(problems))
        parse_all(self.vocoders, self.sample_rate)  # a bad vocoder spec fails here, before any work

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("vocoders", "dev_speakers", "test_speakers"):
            d[k] = list(d[k])
        return d


@dataclass(frozen=True)
class Utterance:
    """One real file: its corpus id, speaker and path."""

    id: str
    speaker: str
    path: str


# ------------------------------------------------------------------------------------------- listing


def _token(text: str) -> str:
    """A path component as an id token: letters, digits and '-' only ('_' separates the speaker)."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-") or "x"


def utterance_id(rel: Path) -> tuple[str, str]:
    """``(id, speaker)`` of a file at ``rel`` under the real root."""
    parts = [_token(p) for p in (*rel.parent.parts, rel.stem)]
    speaker = parts[0]
    return (f"{speaker}_{'-'.join(parts[1:])}" if len(parts) > 1 else speaker), speaker


def list_reals(root: str | Path) -> tuple[list[Utterance], list[Reject]]:
    """Every audio file under ``root`` (symlinks followed; loops, dangling links and duplicate ids are rejects)."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ResynthError(f"--real-root not found: {base} (pass the folder that holds your real recordings)")
    utts: dict[str, Utterance] = {}
    rejects: list[Reject] = []
    seen_dirs: set[tuple[int, int]] = set()

    def walk(folder: Path) -> None:
        try:
            st = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            rejects.append(Reject(str(folder.relative_to(base)), str(folder), f"unreadable folder: {e.strerror or e}"))
            return
        if (st.st_dev, st.st_ino) in seen_dirs:
            rejects.append(Reject(str(folder.relative_to(base)), str(folder), "folder loop: a link leads back to a folder already read"))
            return
        seen_dirs.add((st.st_dev, st.st_ino))
        for e in entries:
            if e.name.startswith("."):
                continue
            path = Path(e.path)
            try:
                is_dir, is_file = e.is_dir(), e.is_file()
            except OSError as err:  # a symlink loop
                rejects.append(Reject(e.name, e.path, f"unreadable path: {err.strerror or err}"))
                continue
            if is_dir:
                walk(path)
            elif not e.name.lower().endswith(AUDIO_EXTS):
                continue
            elif not is_file:
                rejects.append(Reject(e.name, e.path, "unreadable path: a link to nothing (dangling symlink)"))
            else:
                uid, spk = utterance_id(path.relative_to(base))
                if uid in utts:
                    rejects.append(Reject(uid, e.path, f"duplicated id (first seen at {utts[uid].path})"))
                else:
                    utts[uid] = Utterance(uid, spk, e.path)

    walk(base)
    return sorted(utts.values(), key=lambda u: u.id), rejects


def plan_chunks(utts: list[Utterance], chunk_size: int) -> list[Task]:
    """Fixed chunks of utterances in id order (names and contents never depend on the worker count)."""
    n = max(1, -(-len(utts) // chunk_size))
    tasks = []
    for i in range(n):
        chunk = tuple(utts[i * chunk_size:(i + 1) * chunk_size])
        tasks.append(Task(f"resynth-{i:05d}-of-{n:05d}", tuple(u.id for u in chunk), payload=chunk))
    return tasks


# ------------------------------------------------------------------------------------------- per utterance


def _seed(cfg_seed: int, *keys: str) -> list[int]:
    """A generator seed from the global seed and string keys (stable across runs and processes)."""
    h = hashlib.sha256("\x00".join(keys).encode()).digest()
    return [cfg_seed, int.from_bytes(h[:8], "little")]


def _pcm16(x: np.ndarray) -> np.ndarray:
    """What a 16-bit PCM WAV of ``x`` holds (clipped): vocoders re-synthesise the real as written."""
    return np.round(np.clip(x, -1.0, 32767 / 32768) * 32768.0) / 32768.0


def _write_wav(store_root: Path, rel: str, x: np.ndarray, sr: int) -> str:
    """Atomic 16-bit PCM WAV write of ``x`` at ``rel``; returns ``rel``."""
    import soundfile as sf

    final = store_root / rel
    tmp = final.with_name(final.name + ".tmp")
    sf.write(str(tmp), np.clip(x, -1.0, 32767 / 32768), sr, format="WAV", subtype="PCM_16")
    os.replace(tmp, final)
    return rel


def trim_silence(y: np.ndarray, sr: int, top_db: float) -> tuple[np.ndarray, int]:
    """``y`` without its leading and trailing silence (librosa.effects.trim); returns it and the samples cut at the start."""
    import librosa

    hop = max(1, int(0.008 * sr))
    _, (start, end) = librosa.effects.trim(y, top_db=top_db, frame_length=4 * hop, hop_length=hop)
    if end - start < len(y) // 4:  # nearly all "silence": keep the output whole
        return y, 0
    return y[start:end], int(start)


def resynth_utterance(u: Utterance, vocs: list[Vocoder], cfg: ResynthConfig,
                      root: Path) -> tuple[list[str], dict, list[dict], float]:
    """Write one real and its re-syntheses; returns (files written, truth entries, rejects, seconds of real)."""
    sr = cfg.sample_rate
    try:
        x, _ = load(u.path, sr, min_sr=1, mixdown=True)
    except AudioError as e:
        return [], {}, [Reject(u.id, u.path, str(e), stage="resynth").to_dict()], 0.0
    x = _pcm16(x.astype(np.float64))
    if len(x) < cfg.min_seconds * sr:
        return [], {}, [Reject(u.id, u.path, f"too short: {len(x) / sr:.2f} s, minimum {cfg.min_seconds} s", stage="resynth").to_dict()], 0.0
    rms_db = 10 * np.log10(np.mean(x ** 2) + 1e-20)
    if rms_db < cfg.silence_dbfs:
        return [], {}, [Reject(u.id, u.path, f"silent: RMS {rms_db:.0f} dBFS, below {cfg.silence_dbfs:.0f} dBFS", stage="resynth").to_dict()], 0.0
    files = [_write_wav(root, f"gt/{u.id}.wav", x, sr)]
    truth, rejects = {}, []
    for v in vocs:
        pid = pair_id(v.name, u.id)
        rng = np.random.default_rng(_seed(cfg.seed, u.id, v.name))
        try:
            y = np.asarray(v.fn(x, sr, rng), dtype=np.float64)
            if y.ndim != 1 or y.size < sr // 10 or not np.isfinite(y).all():
                raise ValueError(f"output is not a finite mono signal of at least 0.1 s (shape {y.shape})")
            delay = lag(v, x, y, sr)
        except Exception as e:  # one vocoder failing on one file never stops the corpus
            rejects.append(Reject(pid, u.path, f"vocoder failed: {type(e).__name__}: {str(e)[:160]}", stage="resynth").to_dict())
            continue
        shift = 0
        if cfg.trim_edges > 0 and np.random.default_rng(_seed(cfg.seed, u.id, v.name, "trim")).random() < cfg.trim_edges:
            y, cut = trim_silence(y, sr, cfg.trim_top_db)
            shift = -cut
        peak = float(np.max(np.abs(y)))
        if peak > 0.99:  # no clipping; the level is kept otherwise
            y = y * (0.99 / peak)
        files.append(_write_wav(root, f"{v.name}/{u.id}_gen.wav", y, sr))
        truth[pid] = int(delay + shift)
    return files, truth, rejects, len(x) / sr


def run_chunk(task: Task, out: str, *, cfg: ResynthConfig) -> dict:
    """Worker: every utterance of one chunk; returns the chunk's part record."""
    from threadpoolctl import threadpool_limits

    t0, c0 = time.perf_counter(), time.process_time()
    vocs = parse_all(cfg.vocoders, cfg.sample_rate)
    root = Path(out)
    outputs, truth, rejects, seconds = [], {}, [], 0.0
    with threadpool_limits(1):
        for u in task.payload:
            files, t, r, sec = resynth_utterance(u, vocs, cfg, root)
            outputs += files
            truth.update(t)
            rejects += r
            seconds += sec
    return {"outputs": outputs, "truth": truth, "rejects": rejects, "seconds_real": seconds,
            "utterances": sum(1 for f in outputs if f.startswith("gt/")),
            "seconds_taken": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


# ------------------------------------------------------------------------------------------- driver


def _prepare_out(store: Store, cfg: ResynthConfig, vocs: list[Vocoder], overwrite: bool) -> None:
    """Refuse a folder resynthesised with other parameters (unless ``overwrite``) or holding other files."""
    new = json.loads(json.dumps(cfg.to_dict()))
    old = pinned_parameters(store, "resynth.json", new, overwrite=overwrite, what="a corpus", error=ResynthError,
                            ignore=("vocoders_folders",))
    if old is not None:
        for sub in ["gt", ".parts", *old.get("vocoders_folders", [])]:
            store.rmtree(sub)
    elif not store.exists("resynth.json") and store.exists() and store.listdir("") and not overwrite:
        raise ResynthError(f"{store.out} is not empty and holds no resynth.json; pass an empty or new folder (or --overwrite)")
    for sub in ["gt", *[v.name for v in vocs]]:
        store.makedirs(sub)
        store.remove_temporaries(sub)
    store.write_text("resynth.json", json.dumps({**new, "vocoders_folders": [v.name for v in vocs]}, indent=2, sort_keys=True))


def resynth(cfg: ResynthConfig, out: str | Path, *, workers: int = 1, overwrite: bool = False,
            backend: str | None = None, scheduler: str | None = None, progress: bool = True) -> dict:
    """Make (or resume) the corpus in ``out``; returns the summary also saved as ``summary.json``."""
    t0 = time.perf_counter()
    if "://" in str(out):
        raise ResynthError(f"--out {out}: resynth writes a local folder (the corpus is read back from disk by build)")
    vocs = parse_all(cfg.vocoders, cfg.sample_rate)
    utts, read_rejects = list_reals(cfg.real_root)
    if not utts:
        raise ResynthError(f"no audio files found under {cfg.real_root} ({len(read_rejects)} rejected); "
                           f"expected files ending in {', '.join(AUDIO_EXTS[:4])}, ...")
    speakers = sorted({u.speaker for u in utts})
    unknown = sorted(set(cfg.dev_speakers + cfg.test_speakers) - set(speakers))
    if unknown:
        raise ResynthError(f"speaker(s) {', '.join(unknown)} not found under {cfg.real_root} (speakers: {', '.join(speakers[:8])}"
                           f"{', ...' if len(speakers) > 8 else ''})")
    store = Store(out)
    _prepare_out(store, cfg, vocs, overwrite)
    tasks = plan_chunks(utts, cfg.chunk_size)
    changed = stale_tasks(store, tasks)
    if changed:
        print(f"annotate resynth: the input folder changed since the interrupted run: redoing {len(changed)} chunk(s)")
    parts = run_tasks(tasks, partial(run_chunk, cfg=cfg), store, workers=workers, backend=backend, scheduler=scheduler,
                      progress=progress, desc="resynth", unit="utt")
    return finalize(store, cfg, utts, vocs, parts, read_rejects, seconds_taken=time.perf_counter() - t0, workers=workers)


def finalize(store: Store, cfg: ResynthConfig, utts: list[Utterance], vocs: list[Vocoder], parts: list[dict],
             read_rejects: list[Reject], *, seconds_taken: float, workers: int) -> dict:
    """Merge chunk records into truth.json, rejects.jsonl, the split lists and summary.json."""
    from .build import reject_kind

    truth = dict(sorted((k, v) for p in parts for k, v in p["truth"].items()))
    rejects = [r.to_dict() for r in read_rejects] + [r for p in parts for r in p["rejects"]]
    written = {f[3:-4] for p in parts for f in p["outputs"] if f.startswith("gt/")}
    pinned = {**{s: "dev" for s in cfg.dev_speakers}, **{s: "test" for s in cfg.test_speakers}}
    split_of = assign_groups(sorted({u.speaker for u in utts}), cfg.seed, DEFAULT_FRACTIONS, pinned)
    lists: dict[str, list[str]] = {s: [] for s in SPLITS}
    for u in utts:
        if u.id in written:
            lists[split_of[u.speaker]].append(f"{u.id}.wav")
    for split, names in lists.items():
        store.write_text(f"{split}.txt", "".join(n + "\n" for n in names))
    store.write_text("truth.json", json.dumps(truth, indent=1) + "\n")
    store.write_text("rejects.jsonl", "".join(json.dumps(r) + "\n" for r in rejects))
    lags = {v.name: np.array([t for k, t in truth.items() if k.startswith(v.name + "__")]) for v in vocs}
    summary = {
        "files_in": len(utts) + sum(1 for r in read_rejects if r.stage == "read"),
        "utterances": len(written),
        "spoofs": len(truth),
        "spoofs_per_vocoder": {v: int(len(a)) for v, a in lags.items()},
        "speakers_per_split": {s: sorted({u.speaker for u in utts if u.id in written and split_of[u.speaker] == s}) for s in SPLITS},
        "utterances_per_split": {s: len(lists[s]) for s in SPLITS},
        "hours_real": sum(p["seconds_real"] for p in parts) / 3600,
        "rejects": len(rejects),
        "rejects_by_reason": dict(Counter(reject_kind(r["reason"]) for r in rejects).most_common()),
        "lag_ms_median": {v: (float(np.median(np.abs(a))) * 1000 / cfg.sample_rate if a.size else None) for v, a in lags.items()},
        "seconds_taken": seconds_taken,
        "cpu_seconds": sum(p["cpu_seconds"] for p in parts),
        "workers": workers,
    }
    store.write_text("summary.json", json.dumps(summary, indent=2))
    return summary
