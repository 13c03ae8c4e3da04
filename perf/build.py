"""Build throughput, measured side by side in one run (this machine is noisy: read the ratios).

Prints, for the demo corpus (or ``--source/--root``):
  floor   read + resample + 2 STFTs per pair, one process, one thread (a build analyses each real
          once per shard for all its spoofs, so with several vocoders per real it saves part of this);
          "+ writes" adds the output any build must write (2 FLAC encodes, a Parquet row): the format-bound floor
  1 / 2 workers   end-to-end `annotate build` (WAV -> Parquet): per core (spoof audio seconds per CPU
                  second of the workers, robust to other load) and wall clock, both while the workers
                  run (first shard start to last shard end) and including process start-up
  machine         how much two concurrent CPU-bound processes get done relative to one, right now
                  (2.0 on two free cores; a shared host gives less, and caps the 2-worker ratio)
as seconds of spoof audio per second (x real time), each the median over ``--rounds`` back-to-back rounds
(the host drifts by +-30% over minutes). ``--sizes`` also builds 1x and 4x subsets and
prints the peak RSS of each worker process, which must stay flat as the corpus grows.

    python perf/build.py                    # demo corpus
    python perf/build.py --source librisevoc --root /data/LibriSeVoc --limit 400
    python perf/build.py --sizes
    python perf/build.py --compare /tmp/before      # and the code of another checkout, in the same rounds
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def _link(path: str, folder: Path) -> Path:
    """A link in ``folder`` pointing at ``path`` (created once; named by the whole path, so same-named
    files of different folders stay apart)."""
    import hashlib

    folder.mkdir(exist_ok=True)
    link = folder / f"{hashlib.sha1(str(path).encode()).hexdigest()[:12]}_{Path(path).name}"
    if not link.exists():
        link.symlink_to(path)
    return link


def floor_rtf(pairs, sr: int, write: bool = False, shard_size: int = 64) -> float:
    """x real time of the unavoidable work: decode + resample both files, STFT both; ``write`` adds what any
    build must also do with its results (the format-bound floor, docs/performance.md): two FLAC encodes and a Parquet row of the
    three Array2D columns (filled from those STFTs) in shards of ``shard_size`` rows, as the builds below."""
    import tempfile

    import torch
    from threadpoolctl import threadpool_limits

    from annotate.core.audio import encode_flac, load
    from annotate.pipeline.build import float16_saturated
    from annotate.core.dataset import ShardWriter, features
    from annotate.core.spectral import STFTConfig, log_magnitude, stft

    torch.set_num_threads(1)
    cfg = STFTConfig(sample_rate=sr)
    schema = features(cfg.n_freq, sr).arrow_schema
    secs = 0.0
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        t0 = time.process_time()
        writer = ShardWriter(Path(tmp) / "f-0.parquet", schema) if write else None
        for i, p in enumerate(pairs):
            real, _ = load(p.real_path, sr)
            spoof, _ = load(p.spoof_path, sr)
            n = min(len(real), len(spoof))
            sr_spec, ss_spec = stft(real[:n], cfg), stft(spoof[:n], cfg)
            secs += n / sr
            if writer is None:
                continue
            ms, mr = np.abs(ss_spec), np.abs(sr_spec)  # columns filled with the cheapest stand-ins of their content
            writer.write({"id": p.id, "utt_id": p.utt_id, "speaker": p.speaker, "vocoder": p.vocoder, "source": p.source,
                          "split": p.split, "spoof_audio": {"bytes": encode_flac(spoof[:n], sr), "path": None},
                          "real_audio": {"bytes": encode_flac(real[:n], sr), "path": None},
                          "spoof_logmag": log_magnitude(ms), "mask": np.greater(ms, mr).view(np.uint8), "diff": float16_saturated(mr),
                          "num_samples": n, "offset": 0, "align_score": 1.0, "rawboost": 0, "rawboost_seed": 0,
                          "augment_copy": 0})
            if (i + 1) % shard_size == 0:
                writer.close()
                writer = ShardWriter(Path(tmp) / f"f-{i + 1}.parquet", schema)
        if writer is not None:
            writer.close()
        dt = time.process_time() - t0
    return secs / dt


def _spin(barrier, out, n: int = 3_000_000) -> None:
    barrier.wait()
    t = time.perf_counter()
    s = 0
    for i in range(n):
        s += i
    out.put(time.perf_counter() - t)


def _spin_together(k: int) -> float:
    """Seconds the slowest of ``k`` processes takes for the same CPU-bound loop, all started together."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_spin, args=(barrier, out)) for _ in range(k)]
    for p in procs:
        p.start()
    times = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return max(times)


def machine_scaling() -> float:
    """Throughput of two concurrent CPU-bound processes relative to one: what 2 workers can hope for here
    (a shared or busy host gives well under 2). Best of three tries each."""
    one = min(_spin_together(1) for _ in range(3))
    two = min(_spin_together(2) for _ in range(3))
    return 2 * one / two


def run_build(cfg, workers: int, out: Path, tree: str | None = None) -> dict:
    """One build of ``cfg`` into ``out``; ``tree``: run another checkout's code (a subprocess with that tree first
    on the path), so two code versions are measured side by side in one run."""
    shutil.rmtree(out, ignore_errors=True)
    if tree is None:
        from annotate.pipeline.build import build

        s = build(cfg, out, workers=workers, progress=False)
    else:
        import os

        subprocess.run([sys.executable, "-m", "annotate.cli", "build", "--source", cfg.source, "--root", cfg.root,
                        "--out", str(out), "--workers", str(workers), "--shard-size", str(cfg.shard_size), "--no-progress"],
                       check=True, capture_output=True, cwd=tree, env={**os.environ, "PYTHONPATH": tree})
        s = json.loads((out / "summary.json").read_text())
    parts = [json.loads(p.read_text()) for p in (out / ".parts").glob("*.json")]
    busy = sum(p["cpu_seconds"] for p in parts)
    audio = sum(p["seconds_audio"] for p in parts)
    span = max(p["finished"] for p in parts) - min(p["started"] for p in parts)  # workers busy, start-up excluded
    by_worker: dict = {}
    for p in parts:
        by_worker.setdefault(p.get("worker_pid"), []).append(p)
    stagger = max(min(p["started"] for p in ps) for ps in by_worker.values()) - min(p["started"] for p in parts)
    return {"wall_rtf": s["realtime_factor"], "per_core_rtf": audio / busy, "steady_rtf": audio / span,
            "stagger_s": stagger, "span_s": span,
            "peak_rss_mb": max(p.get("peak_rss_mb", 0) for p in parts), "rows": s["rows_out"],
            "hours": s["hours_audio"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="demo")
    ap.add_argument("--root", default=None)
    ap.add_argument("--real-root", default=None)
    ap.add_argument("--limit", type=int, default=None, help="use the first N pairs (by id)")
    ap.add_argument("--sizes", action="store_true", help="also compare worker peak memory at 1x and 4x corpus size")
    ap.add_argument("--shard-size", type=int, default=None,
                    help="pairs per shard (default: the build's own default, as `annotate build` runs)")
    ap.add_argument("--rounds", type=int, default=3, help="measurement rounds; medians are printed (default 3)")
    ap.add_argument("--compare", default=None, metavar="TREE",
                    help="also build with the code of another checkout (e.g. a git worktree of the previous commit) "
                         "in the same rounds, and print both versions' per-core and 2-worker figures")
    ap.add_argument("--repeat", type=int, default=8,
                    help="list each pair this many times (each repeat with its own utterance ids and links to the "
                         "real files, so reals are shared only as in the corpus) so worker start-up amortises")
    a = ap.parse_args()

    from annotate.pipeline.build import BuildConfig
    from annotate.sources import read_source

    cfg = BuildConfig(source=a.source, root=a.root, real_root=a.real_root)
    if a.shard_size:
        cfg = replace(cfg, shard_size=a.shard_size)
    pairs, _ = read_source(a.source, a.root, real_root=a.real_root)
    if a.source == "demo" and a.root is None:
        from annotate.sources.demo import resolved_root

        cfg = replace(cfg, root=str(resolved_root()))
    if a.limit:
        pairs = pairs[: a.limit]
    sr = cfg.stft.sample_rate
    tmp = Path(tempfile.mkdtemp(prefix="vocmask-perf-"))
    try:
        # a manifest pins exactly these pairs for every build below; each repeat reaches the real files
        # through its own symlinks, so a real is shared only by its own spoofs, as in the corpus
        man = tmp / "pairs.tsv"
        man.write_text("real_path\tspoof_path\tvocoder\tspeaker\tsplit\tutt_id\n" + "".join(
            f"{_link(p.real_path, tmp / f'r{k}')}\t{p.spoof_path}\t{p.vocoder}\t{p.speaker}\t{p.split or ''}\t{p.utt_id}_r{k}\n"
            for k in range(a.repeat) for p in pairs))
        mcfg = replace(cfg, source="manifest", root=str(man), real_root=None)
        # rounds of (floor, machine, 1 worker, 2 workers) back to back: the host's speed drifts by +-30% over
        # minutes here, so each ratio is taken within a round and the medians over rounds are printed
        rounds = []
        for k in range(a.rounds):
            fl = floor_rtf(pairs, sr)
            flw = floor_rtf(pairs, sr, write=True, shard_size=cfg.shard_size)
            machine = machine_scaling()
            r1 = run_build(mcfg, 1, tmp / "w1")
            r2 = run_build(mcfg, 2, tmp / "w2")
            rounds.append({"floor": fl, "floor_write": flw, "machine": machine, "r1": r1, "r2": r2})
            if a.compare:
                rounds[-1]["c1"] = run_build(mcfg, 1, tmp / "c1", tree=a.compare)
                rounds[-1]["c2"] = run_build(mcfg, 2, tmp / "c2", tree=a.compare)
            print(f"round {k + 1}: floor {fl:.0f}x, 1 worker {r1['per_core_rtf']:.0f}x per core, "
                  f"2 workers {r2['per_core_rtf']:.0f}x per core, 2/1 throughput {r2['steady_rtf'] / r1['steady_rtf']:.2f}x "
                  f"(machine {machine:.2f}x; 2nd worker's first shard {r2['stagger_s']:.2f} s after the first's, "
                  f"of {r2['span_s']:.1f} s)", flush=True)

        def med(f) -> float:
            return float(np.median([f(r) for r in rounds]))

        hours = rounds[0]["r1"]["hours"]
        print(f"pairs: {len(pairs)} x {a.repeat} ({hours * 3600:.0f} s of spoof audio), source {a.source}; "
              f"medians over {a.rounds} round(s)")
        print(f"{'':<30}{'x real time':>12}")
        print(f"{'floor (read+resample+2 STFT)':<30}{med(lambda r: r['floor']):>12.0f}")
        print(f"{'  + writes (2 FLAC, Parquet)':<30}{med(lambda r: r['floor_write']):>12.0f}   (the format-bound floor)")
        for name, key in (("1 worker", "r1"), ("2 workers", "r2")):
            print(f"{name + ', per core (CPU time)':<30}{med(lambda r: r[key]['per_core_rtf']):>12.0f}   "
                  f"wall: {med(lambda r: r[key]['steady_rtf']):.0f} while workers run, "
                  f"{rounds[0][key]['wall_rtf']:.0f} incl. start-up (round 1)")
        per_core = med(lambda r: r["r1"]["per_core_rtf"])
        print(f"1 worker end-to-end / floor: {med(lambda r: r['r1']['per_core_rtf'] / r['floor']):.2f}; "
              f"/ floor with writes: {med(lambda r: r['r1']['per_core_rtf'] / r['floor_write']):.2f} (target: within 2x, >= 0.5)")
        cold = rounds[0]  # later rounds reuse joblib's warm worker pool, so start-up counts in round 1 only
        print(f"2 workers / 1 worker throughput: {med(lambda r: r['r2']['steady_rtf'] / r['r1']['steady_rtf']):.2f}x while "
              f"workers run; {cold['r2']['wall_rtf'] / cold['r1']['wall_rtf']:.2f}x incl. start-up (round 1, cold)  "
              f"(target >= 1.8)")
        print(f"   this machine: 2 processes of a CPU-bound loop run {med(lambda r: r['machine']):.2f}x one")
        print(f"target >= 300x per core with 1 worker: {'met' if per_core >= 300 else 'NOT met'}")
        if a.compare:
            c1 = med(lambda r: r["c1"]["per_core_rtf"])
            print(f"--compare {a.compare}: 1 worker {c1:.0f}x per core, 2 workers "
                  f"{med(lambda r: r['c2']['per_core_rtf']):.0f}x per core, 2/1 throughput "
                  f"{med(lambda r: r['c2']['steady_rtf'] / r['c1']['steady_rtf']):.2f}x; this tree / that tree, 1 worker "
                  f"per core: {med(lambda r: r['r1']['per_core_rtf'] / r['c1']['per_core_rtf']):.2f}")
        if a.sizes:
            # each size in a fresh process tree, so worker peaks are not carried over between builds
            n = max(8, len(pairs))
            for k, reps in (("1x", 1), ("4x", 4)):
                m = tmp / f"size{k}.tsv"
                m.write_text("real_path\tspoof_path\tvocoder\tspeaker\tsplit\n" + "".join(
                    f"{p.real_path}\t{p.spoof_path}\t{p.vocoder}_s{r}\t{p.speaker}\t{p.split or ''}\n"
                    for r in range(reps) for p in pairs[:n]))
                out = tmp / f"size{k}"
                subprocess.run([sys.executable, "-m", "annotate.cli", "build", "--source", "manifest", "--root", str(m),
                                "--out", str(out), "--workers", "2", "--shard-size", str(cfg.shard_size), "--no-progress"],
                               check=True, capture_output=True)
                s = json.loads((out / "summary.json").read_text())
                print(f"corpus {k}: {s['rows_out']} rows ({s['hours_audio'] * 60:.1f} min), "
                      f"peak RSS per worker {s['peak_worker_rss_mb']:.0f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
