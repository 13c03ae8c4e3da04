"""``benchmark run``: explain a split with every available method, score each submission, print Table 1.

Methods: the chance rows (uniform random, smoothed random, spoof energy) always; DeepSHAP,
GradientSHAP, AttnLRP and Grad-CAM when a detector is given; SpecSegDiff / ADDSegDiff for each
SegDiff checkpoint (dispatched on the checkpoint's condition); the supervised U-Net for each ``--unet``
checkpoint. Every method writes a submission
(``OUT/submissions/{slug}.parquet``) through the explainers' own Python functions, is scored by
:func:`benchmark.score.score_submission` (faithfulness too when a detector is given) and gets a
result JSON ``OUT/{slug}.json`` that ``benchmark leaderboard OUT`` also reads. Resumable: a method
whose result JSON exists (made with the same settings) is not run again, and the explainers resume
their own partial work. torch and the explainers are imported lazily.
"""
from __future__ import annotations

import json
import textwrap
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from training.segdiff.config import EXPLAIN_DDIM_STEPS, EXPLAIN_SAMPLES

from .chance import chance_name
from .score import ScoreError, Truth, load_truth, write_result
from .stats import BootstrapConfig

# explain-method name -> benchmark.chance name (so `benchmark leaderboard OUT` recognises the chance rows)
CHANCE_ROWS = {"random": "uniform random", "smoothed-random": "smoothed random", "energy": "spoof energy"}
DETECTOR_ROWS = {"deepshap": "DeepSHAP", "gradientshap": "GradientSHAP", "attnlrp": "AttnLRP", "gradcam": "Grad-CAM"}
SEGDIFF_ROWS = {"specsegdiff": "SpecSegDiff", "addsegdiff": "ADDSegDiff"}
UNET_ROW = ("unet", "U-Net")
ALL_METHODS = tuple(CHANCE_ROWS) + tuple(DETECTOR_ROWS) + tuple(SEGDIFF_ROWS) + (UNET_ROW[0],)
TABLE_COLUMNS = (("GDice", "GDice"), ("F1", "F1"), ("IoU", "IoU"), ("FBound", "FBound"), ("SSIM", "SSIM"),
                 ("AI", "AI"), ("AD", "AD"), ("AG", "AG"), ("FidIn", "Fid-In"))
RUN_FORMAT = "vocmask-benchmark-run/1"


@dataclass(frozen=True)
class RunConfig:
    """What ``benchmark run`` explains and scores; everything that changes a result is recorded in it."""

    dataset: str
    out: str = "results"
    split: str = "test"
    detector: str | None = None
    segdiff: tuple[str, ...] = ()
    unet: tuple[str, ...] = ()  # `train unet` checkpoints
    methods: tuple[str, ...] | None = None  # a subset of ALL_METHODS; None = every available one
    limit: int | None = None  # explain and score only the split's first N rows
    seed: int = 0
    boot: BootstrapConfig = field(default_factory=BootstrapConfig)
    segdiff_samples: int = EXPLAIN_SAMPLES
    ddim_steps: int | None = EXPLAIN_DDIM_STEPS  # None = every diffusion step (DDPM)
    force: bool = False
    progress: bool = True
    workers: int = 1  # explain processes per method (rows split among them, one torch thread each); same output
    deepshap_references: int | None = None  # None = explain's default (baselines.shap.ShapConfig)
    gradientshap_samples: int | None = None


@dataclass(frozen=True)
class Job:
    """One table row: which explainer makes it and where its files go."""

    method: str  # explain method name
    label: str  # row name (result "name")
    slug: str  # file stem under OUT
    kind: str  # chance | xai | segdiff | unet
    checkpoint: str | None = None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _segdiff_kind(checkpoint: str) -> str:
    """``specsegdiff`` or ``addsegdiff`` from a checkpoint's condition (clear error if it is not one)."""
    try:
        from training.segdiff.infer import load_checkpoint
    except ImportError as e:
        raise ScoreError(f"--segdiff needs training.segdiff, which cannot be imported ({e})") from None
    try:
        _, cfg, _ = load_checkpoint(checkpoint)
    except FileNotFoundError as e:
        raise ScoreError(str(e)) from None
    return "specsegdiff" if cfg.model.condition == "spec" else "addsegdiff"


def plan(cfg: RunConfig) -> tuple[list[Job], list[str]]:
    """The rows to compute, in table order, and notes on methods left out (and why)."""
    wanted = set(cfg.methods) if cfg.methods else None
    if wanted is not None:
        unknown = sorted(wanted - set(ALL_METHODS))
        if unknown:
            raise ScoreError(f"unknown method(s) {', '.join(unknown)} in --methods; choose from {', '.join(ALL_METHODS)}")
    jobs, notes = [], []
    for m, label in DETECTOR_ROWS.items():
        if wanted is not None and m not in wanted:
            continue
        if cfg.detector:
            jobs.append(Job(m, label, m, "xai"))
        elif wanted is not None:
            raise ScoreError(f"--methods {m} explains a detector: pass --detector CKPT (a `train detector` folder)")
    if not cfg.detector:
        notes.append("no --detector: the detector methods (DeepSHAP, GradientSHAP, AttnLRP, Grad-CAM) and the "
                     "faithfulness metrics are left out")
    kinds = [(ck, _segdiff_kind(ck)) for ck in cfg.segdiff]
    for ck, kind in kinds:
        if wanted is not None and kind not in wanted:
            notes.append(f"{ck}: a {kind} checkpoint, not in --methods; skipped")
            continue
        label = SEGDIFF_ROWS[kind]
        if sum(k == kind for _, k in kinds) > 1:  # several checkpoints of one kind: tell them apart
            label = f"{label} ({Path(ck).resolve().name})"
        jobs.append(Job(kind, label, _slug(label.lower().replace(" (", "_").rstrip(")")), "segdiff", ck))
    for kind in SEGDIFF_ROWS:
        if wanted is not None and kind in wanted and kind not in {k for _, k in kinds}:
            raise ScoreError(f"--methods {kind} needs a {kind} checkpoint: pass --segdiff CKPT (a `train segdiff` folder)")
    for ck in _unet_checkpoints(cfg):
        if wanted is not None and UNET_ROW[0] not in wanted:
            notes.append(f"{ck}: a U-Net checkpoint, not in --methods; skipped")
            continue
        label = UNET_ROW[1] if len(cfg.unet) == 1 else f"{UNET_ROW[1]} ({Path(ck).resolve().name})"
        jobs.append(Job(UNET_ROW[0], label, _slug(label.lower().replace(" (", "_").rstrip(")")), "unet", ck))
    if wanted is not None and UNET_ROW[0] in wanted and not cfg.unet:
        raise ScoreError("--methods unet needs a U-Net checkpoint: pass --unet CKPT (a `train unet` folder)")
    for m, name in CHANCE_ROWS.items():  # the chance rows are always part of the table
        label = chance_name(name)
        jobs.append(Job(m, label, "chance_" + name.replace(" ", "_"), "chance"))
    return jobs, notes


def _unet_checkpoints(cfg: RunConfig) -> tuple[str, ...]:
    """``cfg.unet``, each checked to be a loadable `train unet` checkpoint (one-line error otherwise)."""
    if not cfg.unet:
        return ()
    try:
        from training.unet.infer import load_checkpoint
    except ImportError as e:
        raise ScoreError(f"--unet needs training.unet, which cannot be imported ({e})") from None
    for ck in cfg.unet:
        try:
            load_checkpoint(ck)
        except (FileNotFoundError, ValueError) as e:
            raise ScoreError(str(e)) from None
    return cfg.unet


def subset_truth(truth: Truth, limit: int | None) -> Truth:
    """The split's first ``limit`` rows (dataset order, as the explainers' ``limit`` takes them)."""
    if limit is None or limit >= len(truth.ids):
        return truth
    if limit < 1:
        raise ScoreError(f"--limit must be at least 1, got {limit}")
    ids = truth.ids[:limit]
    return Truth(ids, {i: truth.vocoder[i] for i in ids}, {i: truth.masks[i] for i in ids}, truth.source)


def settings(cfg: RunConfig, truth: Truth, job: Job) -> dict:
    """What a result depends on; a stored result is reused only when these match."""
    return {
        "format": RUN_FORMAT,
        "dataset": str(Path(cfg.dataset).resolve()),
        "split": cfg.split,
        "limit": cfg.limit,
        "n_utterances": len(truth.ids),
        "seed": cfg.seed,
        "detector": str(Path(cfg.detector).resolve()) if cfg.detector else None,
        "method": job.method,
        "checkpoint": str(Path(job.checkpoint).resolve()) if job.checkpoint else None,
        "segdiff_samples": cfg.segdiff_samples if job.kind == "segdiff" else None,
        "ddim_steps": cfg.ddim_steps if job.kind == "segdiff" else None,
        "bootstrap": cfg.boot.to_dict(),
    } | ({"shap": _shap_config(cfg).to_dict()} if job.method in ("deepshap", "gradientshap") else {}) \
      | ({"checkpoint_step": _unet_step(job.checkpoint)} if job.kind == "unet" else {})


def _shap_config(cfg: RunConfig):
    """explain's DeepSHAP / GradientSHAP settings with this run's reference and sample counts."""
    from baselines.shap import ShapConfig

    d = ShapConfig()
    return replace(d, n_references=cfg.deepshap_references or d.n_references, n_samples=cfg.gradientshap_samples or d.n_samples)


def _unet_step(checkpoint: str) -> int | None:
    """The training step of a `train unet` checkpoint (a resumed, longer run is a new result)."""
    from training.unet.infer import load_checkpoint

    return load_checkpoint(checkpoint)[3].get("step")


def explain(cfg: RunConfig, job: Job, out: Path, n_rows: int) -> Path:
    """Write ``job``'s submission with the explainers' own run loops (resumable there); with ``cfg.workers`` > 1,
    as that many row shards in parallel processes, then merged (heatmaps are seeded per row: the same file)."""
    workers = min(cfg.workers, n_rows)
    if workers <= 1:
        return _explain_part(cfg, job, out, None)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from .merge import merge

    parts = [out.with_name(f"{out.stem}.part{i}of{workers}.parquet") for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        # part 0's progress bar stands for all of them (equal shares of the rows run side by side)
        done = [pool.submit(_explain_worker, replace(cfg, progress=cfg.progress and i == 0), job, parts[i], (i, workers))
                for i in range(workers)]
        for d in done:
            d.result()
    merge(parts, out)
    for part in parts:
        _remove(part)
    return out


def _explain_worker(cfg: RunConfig, job: Job, out: Path, shard: tuple[int, int]) -> Path:
    import torch

    torch.set_num_threads(1)  # the processes share the cores
    return _explain_part(cfg, job, out, shard)


def _explain_part(cfg: RunConfig, job: Job, out: Path, shard: tuple[int, int] | None) -> Path:
    from baselines.explain import ExplainConfig, run, run_segdiff, run_unet

    if job.kind == "unet":
        return run_unet(job.checkpoint, cfg.dataset, cfg.split, out, limit=cfg.limit, progress=cfg.progress, shard=shard)
    if job.kind == "segdiff":
        meta = _segdiff_meta(job.checkpoint)
        det = None if meta.get("detector") else cfg.detector  # ADDSegDiff: its own training detector first
        return run_segdiff(job.method, job.checkpoint, cfg.dataset, cfg.split, out, seed=cfg.seed, limit=cfg.limit,
                           n_samples=cfg.segdiff_samples, ddim_steps=cfg.ddim_steps, detector=det, progress=cfg.progress,
                           shard=shard)
    ec = ExplainConfig(method=job.method, dataset=cfg.dataset, split=cfg.split,
                       detector=cfg.detector if job.kind == "xai" else None, seed=cfg.seed, limit=cfg.limit,
                       **({"shap": _shap_config(cfg)} if job.kind == "xai" else {}))
    return run(ec, out, progress=cfg.progress, shard=shard)


def _remove(path: Path) -> None:
    """A part submission (file or folder) and the explainer's resume folder next to it."""
    import shutil

    for p in (path, path.with_name(path.name + ".parts")):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)


def _segdiff_meta(checkpoint: str) -> dict:
    from training.segdiff.infer import load_checkpoint

    return load_checkpoint(checkpoint)[2]


def _check_ids(sub: Path, truth: Truth) -> None:
    from .submission import read_ids, submission_files

    if set(read_ids(submission_files(sub))) != set(truth.ids):
        raise ScoreError(f"{sub} covers other rows than this run ({len(truth.ids)} rows; another --limit or --split?): "
                         "delete it or pass --force")


def run_benchmark(cfg: RunConfig, log=print) -> tuple[list[dict], list[str]]:
    """Explain and score every planned method; returns the results in table order and the plan's notes."""
    from tqdm import tqdm

    from .score import load_detector_checkpoint, score_submission

    out = Path(cfg.out)
    subs = out / "submissions"
    jobs, notes = plan(cfg)
    truth = subset_truth(load_truth(cfg.dataset, cfg.split), cfg.limit)
    detector = None
    spoof_probs: dict = {}  # the detector on each spoof input, shared by the methods' faithfulness scores
    results = []
    bar = tqdm(jobs, desc="benchmark run", unit="method", disable=not cfg.progress)
    for job in bar:
        bar.set_postfix_str(job.method)
        res_path, sub = out / f"{job.slug}.json", subs / f"{job.slug}.parquet"
        want = settings(cfg, truth, job)
        if res_path.exists() and not cfg.force:
            old = json.loads(res_path.read_text())
            if old.get("run") == want:
                log(f"{job.label}: result exists ({res_path}), skipped")
                results.append(old)
                continue
            raise ScoreError(f"{res_path} was made with other settings ({_diff(old.get('run') or {}, want)}): "
                             "pass --force to recompute it, or choose another --out")
        if cfg.force:
            res_path.unlink(missing_ok=True)
            sub.unlink(missing_ok=True)
        t0 = time.perf_counter()
        if sub.exists():
            _check_ids(sub, truth)
            log(f"{job.label}: reusing {sub}")
        else:
            explain(cfg, job, sub, len(truth.ids))
        t1 = time.perf_counter()
        if cfg.detector and detector is None:
            detector = load_detector_checkpoint(cfg.detector)
        result = score_submission(sub, cfg.dataset, cfg.split, detector=detector, name=job.label, boot=cfg.boot, truth=truth,
                                  spoof_probs=spoof_probs)
        result["kind"] = job.kind
        result["detector"] = want["detector"]
        result["run"] = want
        result["seconds"] = {"explain": round(t1 - t0, 3), "score": round(time.perf_counter() - t1, 3)}
        for w in result["warnings"]:
            log(f"{job.label}: warning: {w}")
        write_result(result, res_path)
        results.append(json.loads(res_path.read_text()))
    return results, notes


def _diff(old: dict, new: dict) -> str:
    keys = [k for k in new if old.get(k) != new[k]]
    return "; ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in keys[:3]) or "unknown"


# ----------------------------------------------------------------------------------------------- Table 1


def _mean(r: dict, m: str) -> float | None:
    return (r.get("overall", {}).get(m) or {}).get("mean")


def _ci(r: dict, m: str) -> tuple[float, float] | None:
    s = r.get("overall", {}).get(m) or {}
    lo, hi = s.get("ci") or (None, None)
    return None if lo is None else (lo, hi)


def above_chance(results: list[dict], metric: str = "IoU") -> set[str]:
    """Names of the non-chance rows whose 95% CI of ``metric`` lies above every chance row's CI."""
    chance = [_ci(r, metric) for r in results if r.get("kind") == "chance"]
    ceiling = max((c[1] for c in chance if c), default=None)
    if ceiling is None:
        return set()
    return {r["name"] for r in results if r.get("kind") != "chance" and (_ci(r, metric) or (-np.inf,))[0] > ceiling}


def format_table1(results: list[dict], notes: list[str] = ()) -> str:
    """Rows = methods (chance rows last), columns GDice F1 IoU FBound SSIM | AI AD AG Fid-In, mean percent, plus a note."""
    rows = [r for r in results if r.get("kind") != "chance"] + [r for r in results if r.get("kind") == "chance"]
    marked = above_chance(results)
    head = ["Method"] + [h for _, h in TABLE_COLUMNS]
    body = []
    for r in rows:
        name = r["name"] + (" *" if r["name"] in marked else "")
        body.append([name] + ["-" if _mean(r, m) is None else f"{_mean(r, m):.1f}" for m, _ in TABLE_COLUMNS])
    widths = [max(len(x[c]) for x in [head] + body) for c in range(len(head))]
    seg = 1 + 5  # method + segmentation columns, then the faithfulness block

    def line(cells: list[str]) -> str:
        parts = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return ("  ".join(parts[:seg]) + "  |  " + "  ".join(parts[seg:])).rstrip()

    rule = "-" * len(line(head))
    n_chance = sum(r.get("kind") == "chance" for r in rows)
    lines = [line(head), rule] + [line(b) for b in body[: len(body) - n_chance]]
    lines += ([rule] if len(body) > n_chance else []) + [line(b) for b in body[len(body) - n_chance :]]
    note = [textwrap.fill(t, width=max(len(rule), 100)) for t in [_note(results, marked)] + [f"Note: {n}" for n in notes]]
    return "\n".join(["Table 1 (vocmask benchmark run)", rule] + lines + [rule] + note)


def _note(results: list[dict], marked: set[str]) -> str:
    r = results[0] if results else {}
    run = r.get("run") or {}
    total = f" (the first {run['limit']} rows, --limit)" if run.get("limit") else ""
    det = run.get("detector")
    faith = (f"AI/AD/AG/Fid-In: the detector {det} on the masked-in input (bins outside the binarised heatmap "
             "replaced by the real twin, magnitude and phase)." if det else "No detector: no faithfulness metrics.")
    star = (f" * = IoU 95% CI above every chance row's ({', '.join(sorted(marked))})." if marked
            else " No method's IoU 95% CI clears the chance rows'.")
    return (f"Note: percent, per utterance then the mean over {r.get('n_utterances', '?')} spoof utterances of "
            f"{Path(r.get('dataset', '?')).name}/{r.get('split', '?')}{total}; heatmaps binarised at their own 95% quantile. "
            f"{faith} Chance rows (uniform random, smoothed random, spoof energy) are the floor: a method in their "
            f"range localises no better than chance.{star} 95% bootstrap CIs and per-vocoder means are in the result JSONs.")
