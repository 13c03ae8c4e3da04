"""`annotate card`: the Hub data card of a built dataset, from the source's template in ``annotate/hub/datacards/``.

A template is Markdown with a YAML front matter (the source's licence, language, tags, pretty name,
and an optional ``vocmask:`` block read here and never published) and ``${name}`` placeholders that
this module fills from the build: counts, hours, mask coverage, alignment statistics, rejects, every
build parameter, a figure of example masks, and the citations. The YAML header is rendered with
huggingface_hub's ``DatasetCardData`` (offline) and ``datasets``' ``DatasetInfosDict`` so that
``configs`` and ``dataset_info`` are exactly what ``load_dataset`` reads back.
"""
from __future__ import annotations

import json
import os
import re
import string
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import __version__
from ..core.dataset import SHARD_RE, build_config, open_shard, shard_paths
from ..core.figures import save_figure

# the withheld test config drops everything the masks can be rebuilt from: the mask, D, and the real twin
# (mask = Eq. 2 of the spoof against its aligned real); the private key keeps mask and D
WITHHELD_COLUMNS = ("mask", "diff", "real_audio")
KEY_COLUMNS = ("mask", "diff")
BENCHMARK_CONFIG = "benchmark"  # config holding the test split when its masks are withheld
FIGURE_NAME = "mask_examples.png"
ROW_FIGURE_NAME = "example_row.png"
SPLIT_ORDER = ("train", "dev", "validation", "test")
PLACEHOLDERS = ("pretty_name", "repo_id", "summary", "usage", "columns", "split_table", "alignment", "rejects",
                "figure", "method", "build_config", "benchmark", "paper_citation", "vocoders", "n_vocoders",
                "n_speakers", "license", "mask_percent")  # the ${names} a template may use
BASE_TAGS = ["audio-deepfake-detection", "anti-spoofing", "explainability", "xai", "vocoder-artifacts",
             "segmentation", "spectrogram", "vocmask"]

PAPER_CITATION = """@inproceedings{grinberg2025datadriven,
  title     = {A Data-Driven Diffusion-based Approach for Audio Deepfake Explanations},
  author    = {Grinberg, Petr and Kumar, Ankur and Koppisetti, Surya and Bharaj, Gaurav},
  booktitle = {Proc. Interspeech},
  year      = {2025},
  note      = {arXiv:2506.03425}
}"""


class CardError(ValueError):
    """A card that cannot be rendered (missing template, bad placeholder); one line for the user."""


def templates_dir() -> Path:
    """The package's ``annotate/hub/datacards/`` (package data, so a regular install ships it; ``VOCMASK_DATACARDS``
    overrides it)."""
    from importlib.resources import files

    env = os.environ.get("VOCMASK_DATACARDS")
    return Path(env) if env else Path(str(files("annotate.hub") / "datacards"))


# ----------------------------------------------------------------------------------------------- statistics


@dataclass
class GroupStats:
    """Accumulated numbers of one (split, vocoder) group."""

    rows: int = 0
    samples: int = 0
    coverage: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    speakers: set[str] = field(default_factory=set)
    utts: set[str] = field(default_factory=set)


def row_coverage(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Per-row mean of an Array2D column (fraction of 1-pixels of each mask), without building 2-D arrays."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    nulls = arr.is_null().to_numpy(zero_copy_only=False)  # rows without a mask (no real twin): NaN
    frames = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = arr.flatten().flatten().to_numpy(zero_copy_only=False)
    if frames.size == 0:
        return np.zeros(0)
    if nulls.all():
        return np.full(frames.size, np.nan)
    n_freq = len(flat) // max(int(frames.sum()), 1)
    ends = np.cumsum(frames * n_freq)
    cs = np.concatenate([[0], np.cumsum(flat, dtype=np.int64)])
    starts = np.concatenate([[0], ends[:-1]])
    px = np.maximum(ends - starts, 1)
    return np.where(nulls, np.nan, (cs[ends] - cs[starts]) / px)


def collect_stats(ds: str | Path) -> dict:
    """Counts, hours, coverage and alignment numbers per (split, vocoder), streaming one row group at a time."""
    cfg = build_config(ds)
    sr = cfg["stft"]["sample_rate"]
    groups: dict[tuple[str, str], GroupStats] = defaultdict(GroupStats)
    paths = shard_paths(ds)
    if not paths:
        raise FileNotFoundError(f"no shards in {Path(ds) / 'data'} (run `annotate build` first)")
    base = ["split", "vocoder", "speaker", "utt_id", "num_samples", "align_score", "offset"]
    masks = True  # False for a corpus without real twins (frame labels, null masks)
    for path in paths:
        pf = open_shard(path)
        has_mask = "mask" in pf.schema_arrow.names
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g, columns=base + (["mask"] if has_mask else []))
            cov = row_coverage(t.column("mask")) if has_mask else np.full(t.num_rows, np.nan)
            masks = masks and not (has_mask and "frame_labels" in pf.schema_arrow.names and t.column("mask").null_count)
            cols = {n: t.column(n).to_pylist() for n in base}
            for i in range(t.num_rows):
                s = groups[(cols["split"][i], cols["vocoder"][i])]
                s.rows += 1
                s.samples += int(cols["num_samples"][i])
                s.coverage.append(float(cov[i]))
                s.scores.append(float(cols["align_score"][i]))
                s.offsets.append(int(cols["offset"][i]))
                s.speakers.add(cols["speaker"][i])
                s.utts.add(cols["utt_id"][i])
    return {"sample_rate": sr, "groups": dict(groups), "masks": masks}


def _split_key(s: str) -> tuple:
    return (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s)


def split_names(ds: str | Path) -> list[str]:
    """Splits of ``ds`` in the usual order (train, dev/validation, test, then the rest by name)."""
    return sorted({SHARD_RE.match(p.name)["split"] for p in shard_paths(ds)}, key=_split_key)


def check_complete(ds: str | Path) -> dict[str, list[Path]]:
    """Shards per split; raises if a shard of a split's ``-of-N`` set is missing (an unfinished build)."""
    out: dict[str, list[Path]] = defaultdict(list)
    expected: dict[str, int] = {}
    for p in shard_paths(ds):
        m = SHARD_RE.match(p.name)
        out[m["split"]].append(p)
        n = int(m["n"])
        if expected.setdefault(m["split"], n) != n:
            raise CardError(f"{Path(ds) / 'data'}: split {m['split']!r} mixes shard sets of {expected[m['split']]} and {n} "
                            "shards — re-run `annotate build` to finish or clean the build")
    for split, ps in out.items():
        have = {int(SHARD_RE.match(p.name)["i"]) for p in ps}
        missing = sorted(i for i in set(range(expected[split])) - have
                         if not _empty_shard(ds, f"{split}-{i:05d}-of-{expected[split]:05d}"))
        if missing:
            n = expected[split]
            raise CardError(f"{Path(ds) / 'data'}: split {split!r} lacks shard {split}-{missing[0]:05d}-of-{n:05d} "
                            f"({len(missing)} missing) — the build is unfinished; re-run the same `annotate build`")
    if not out:
        raise FileNotFoundError(f"no shards in {Path(ds) / 'data'} (run `annotate build` first)")
    return dict(out)


def _empty_shard(ds: str | Path, name: str) -> bool:
    """True when the build finished shard ``name`` with no rows (every pair rejected), so wrote no file for it."""
    try:
        part = json.loads((Path(ds) / ".parts" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return False
    return part.get("rows") == 0 and not part.get("outputs")


def empty_splits(ds: str | Path) -> list[str]:
    """Splits the build left without rows (from summary.json; empty if the build wrote none)."""
    try:
        return list(json.loads((Path(ds) / "summary.json").read_text()).get("empty_splits") or [])
    except (OSError, ValueError):
        return []


# ----------------------------------------------------------------------------------------------- markdown blocks


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(x: float, missing: str = "withheld") -> str:
    return missing if not np.isfinite(x) else f"{100 * x:.2f}"


def split_table(stats: dict) -> str:
    """Rows, utterances, speakers, hours, mean duration and mask coverage per split and vocoder, with totals."""
    sr = stats["sample_rate"]
    groups = stats["groups"]
    missing = "withheld" if stats.get("masks", True) else "none"
    rows = []
    by_split: dict[str, list[GroupStats]] = defaultdict(list)
    for (split, voc), s in sorted(groups.items(), key=lambda kv: (_split_key(kv[0][0]), kv[0][1])):
        by_split[split].append(s)
        rows.append([split, voc, s.rows, len(s.utts), len(s.speakers), f"{s.samples / sr / 3600:.3f}",
                     f"{s.samples / sr / max(s.rows, 1):.2f}", _pct(float(np.nanmean(s.coverage)) if s.rows and np.isfinite(s.coverage).any() else np.nan, missing)])
    for split, ss in by_split.items():
        cov = np.concatenate([np.asarray(s.coverage) for s in ss])
        n = sum(s.rows for s in ss)
        rows.append([f"**{split}**", "all", n, len(set().union(*[s.utts for s in ss])), len(set().union(*[s.speakers for s in ss])),
                     f"{sum(s.samples for s in ss) / sr / 3600:.3f}", f"{sum(s.samples for s in ss) / sr / max(n, 1):.2f}",
                     _pct(float(np.nanmean(cov)) if np.isfinite(cov).any() else np.nan, missing)])
    return _table(["split", "vocoder", "rows", "utterances", "speakers", "hours", "mean s", "mask %"], rows)


def alignment_table(stats: dict) -> str:
    """Alignment score and |offset| (ms) per vocoder over all splits."""
    sr = stats["sample_rate"]
    per_voc: dict[str, list[GroupStats]] = defaultdict(list)
    for (_, voc), s in stats["groups"].items():
        per_voc[voc].append(s)
    rows = []
    everything = ("all", [s for ss in per_voc.values() for s in ss])
    for voc, ss in sorted(per_voc.items()) + [everything]:
        sc = np.concatenate([np.asarray(s.scores, dtype=np.float64) for s in ss])
        off = np.abs(np.concatenate([np.asarray(s.offsets, dtype=np.float64) for s in ss])) * 1000.0 / sr
        rows.append([voc if voc != "all" else "**all**", sc.size, f"{sc.mean():.3f}", f"{sc.min():.3f}", f"{np.median(off):.2f}",
                     f"{np.percentile(off, 95):.2f}", f"{off.max():.2f}"])
    return _table(["vocoder", "pairs", "score mean", "score min", "median abs(offset) ms", "p95 abs(offset) ms", "max abs(offset) ms"], rows)


def rejects_block(ds: str | Path) -> str:
    """Rejected pairs/files by reason (from summary.json, else rejects.jsonl) and by stage."""
    ds = Path(ds)
    by_reason: Counter = Counter()
    by_stage: Counter = Counter()
    rej = ds / "rejects.jsonl"
    if rej.exists():
        from ..pipeline.build import reject_kind

        for line in rej.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                by_reason[reject_kind(r.get("reason", ""))] += 1
                by_stage[r.get("stage", "?")] += 1
    summ = ds / "summary.json"
    pairs_in = None
    if summ.exists():
        s = json.loads(summ.read_text())
        pairs_in = s.get("pairs_in")
        if not by_reason and s.get("rejects_by_reason"):
            by_reason = Counter(s["rejects_by_reason"])
    total = sum(by_reason.values())
    head = f"{total} rejected" + (f" out of {pairs_in} pairs/files read" if pairs_in is not None else "")
    if not total:
        return head + " — every pair read was aligned and annotated."
    rows = [[r, n] for r, n in by_reason.most_common()]
    stages = ", ".join(f"{k}: {v}" for k, v in sorted(by_stage.items())) if by_stage else "n/a"
    return f"{head} (by stage — {stages}); the reasons (numbers blanked):\n\n" + _table(["reason", "count"], rows)


def flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def config_table(cfg: dict) -> str:
    """Every build parameter, dotted names, as published in the shards (local paths as folder names)."""
    from ..pipeline.build import public_config

    return _table(["parameter", "value"], [[f"`{k}`", f"`{json.dumps(v)}`"] for k, v in flatten(public_config(cfg))])


def method_text(cfg: dict) -> str:
    """How the masks were made, in words, with this build's values."""
    st, mk, al = cfg["stft"], cfg["mask"], cfg["align"]
    rb = (f"Matched RawBoost (algorithm {cfg['rawboost_algo']}) was applied to a pair with probability "
          f"{cfg['rawboost_prob']}, the same noise and filters to both signals (seed derived from global seed "
          f"{cfg['seed']} and the pair id), before the STFT; {cfg['augment_copies']} extra augmented copies per pair."
          if cfg.get("rawboost_prob") or cfg.get("augment_copies") else
          "No RawBoost augmentation was applied (`rawboost_prob` 0, no augmented copies).")
    return "\n".join([
        f"1. **Decode and resample** both files to {st['sample_rate']} Hz (soxr, quality `{cfg.get('resample_quality')}`); "
        f"files below {cfg.get('min_sample_rate')} Hz are rejected.",
        f"2. **Align** (a spoof is not sample-aligned with its real twin): DTW (dtaidistance, C path) on {al.get('n_mels')}-band "
        f"log-mel frames pooled by {al.get('pool')}, within a Sakoe-Chiba band of {al.get('window_s')} s beyond the length "
        f"difference, finds the border points; the offset is then refined to the sample by searching ±{al.get('refine_hops')} "
        f"hops (steps of 16, 4, then 1 sample) for the shift that minimises the log-magnitude distance (floored at "
        f"{al.get('refine_floor_db')} dB re the peak) on {al.get('refine_frames')} frames spread over the overlap. The alignment score is the correlation of the aligned, "
        f"mean-normalised log-mel features (1 = identical). Pairs scoring below {al.get('min_score')}, whose common span keeps "
        f"less than {al.get('min_overlap')} of the shorter signal, or shifted by more than {al.get('max_offset_s')} s are "
        f"rejected. Both signals are trimmed to their common span.",
        f"3. **Augment**: {rb}",
        f"4. **STFT** of the aligned pair: {st['window']} window, n_fft {st['n_fft']}, win {st['win_length']}, hop "
        f"{st['hop_length']}, centred={st['center']} — {st['n_fft'] // 2 + 1} frequency bins, time-first arrays.",
        f"5. **Mask** (paper Eq. 2): `D = |G(Ms) − G(Mb)| / (|G(Mb)| + {mk['eps']})` on linear magnitudes, with G a separable "
        f"Gaussian of size {mk['time_size']} (variance {mk['time_var']}) along time and {mk['freq_size']} (variance "
        f"{mk['freq_var']}) along frequency; `mask = D > quantile(D, {mk['quantile']})` per utterance, so about "
        f"{100 * (1 - mk['quantile']):.0f}% of each spectrogram is marked. `D` is stored (float16) to re-threshold without rebuilding.",
    ])


def columns_text(withheld: bool) -> str:
    """The row schema in words."""
    rows = [
        ["`id`", "string", "row id: `{vocoder}__{utterance}` (`__augN` suffix for augmented copies)"],
        ["`utt_id`, `speaker`, `vocoder`, `source`, `split`", "string", "provenance; all spoofs of one real utterance share a split"],
        ["`spoof_audio`, `real_audio`", "Audio (FLAC bytes, `decode=False`)", "the aligned pair, same length"],
        ["`spoof_logmag`", "Array2D (frames, 257) float32", "log-magnitude of the spoof STFT"],
        ["`mask`", "Array2D (frames, 257) uint8", "ground-truth artifact mask (1 = artifact)"],
        ["`diff`", "Array2D (frames, 257) float16", "relative difference D behind the mask"],
        ["`num_samples`, `offset`, `align_score`", "int64, int64, float32", "aligned length, spoof − real offset (samples), DTW alignment score"],
        ["`rawboost`, `rawboost_seed`, `augment_copy`", "int8, int64, int16", "RawBoost algorithm (0 = none), its seed, copy index"],
    ]
    text = _table(["column", "type", "meaning"], rows)
    if withheld:
        text += (f"\n\nThe `test` split (config `{BENCHMARK_CONFIG}`) has every column except `mask`, `diff` and "
                 "`real_audio`: its masks are withheld for the hidden-label benchmark, and with them the real twins "
                 "the masks could be recomputed from.")
    return text


def usage_text(repo_id: str, withheld: bool) -> str:
    """How to load rows and decode their arrays and audio."""
    test_line = (f'test = load_dataset("{repo_id}", "{BENCHMARK_CONFIG}", split="test")  # no mask / diff / real_audio\n'
                 if withheld else "")
    return (
        "```python\n"
        "import io\n\nimport numpy as np\nimport soundfile as sf\nfrom datasets import load_dataset\n\n"
        f'ds = load_dataset("{repo_id}")  # splits: see the table below\n'
        f"{test_line}"
        'row = ds["train"].with_format("numpy")[0]\n'
        'mask = row["mask"].astype(np.uint8)        # (frames, 257), time first\n'
        'spec = row["spoof_logmag"]                 # (frames, 257) float32\n'
        'spoof, sr = sf.read(io.BytesIO(row["spoof_audio"]["bytes"]))\n'
        "```\n\n"
        "The numpy formatter returns integer arrays as int64 unless a dtype is requested; cast masks back to uint8."
    )


def withheld_text(withheld: bool, key_name: str | None = None) -> str:
    if not withheld:
        return ("All splits are public with their masks. Score an explanation method with "
                "`benchmark score submission.parquet --dataset DS` (vocmask).")
    return ("**Hidden-label benchmark.** The masks (`mask`, `diff`) of the `test` split are withheld, and so are its "
            "real twins (`real_audio`), from which `annotate` would recompute them: the public test rows carry the spoof "
            "audio, its spectrogram and metadata only. The organisers hold a private key file (Parquet: `id`, "
            "`mask`, `diff`) and score submissions with `benchmark score submission.parquet --dataset DS --key KEY` "
            "(vocmask). A submission is a Parquet file with `id` and `heatmap` (float, same (frames, 257) grid as the row's "
            "spectrogram) for every test id.\n\n"
            "**The limit of withholding.** Where the real recordings are public themselves (LibriSeVoc's reals are "
            "LibriTTS utterances, named by the row ids), a determined submitter can fetch them, align them to the "
            "public spoofs and rebuild the test masks with vocmask. An organiser who needs a truly hidden test set "
            "makes its spoofs from private real recordings (re-synthesised with `annotate resynth`) that are never "
            "published, and withholds those.")


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket of ``n`` rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    for b, name in bounds:
        if n < b:
            return name
    return "n>1T" if n >= 10**12 else "1B<n<10B"


# ----------------------------------------------------------------------------------------------- figures


def pick_rows(ds: str | Path, splits: list[str], per_vocoder: int = 1, max_vocoders: int = 6) -> list[str]:
    """Ids of up to ``max_vocoders`` example rows (one per vocoder) from the first of ``splits`` that has rows."""
    for split in splits:
        paths = shard_paths(ds, split)
        if not paths:
            continue
        seen: dict[str, list[str]] = defaultdict(list)
        for p in paths:
            t = open_shard(p).read(columns=["id", "vocoder"])
            for i, v in zip(t.column("id").to_pylist(), t.column("vocoder").to_pylist()):
                if len(seen[v]) < per_vocoder:
                    seen[v].append(i)
        return [i for v in sorted(seen)[:max_vocoders] for i in seen[v]]
    return []


def mask_figure(ds: str | Path, ids: list[str], out: str | Path) -> Path:
    """One panel per row: the spoof log-magnitude with its mask drawn on top (red), time in seconds, kHz."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..show import find_row

    cfg = build_config(ds)
    sr, hop = cfg["stft"]["sample_rate"], cfg["stft"]["hop_length"]
    fig, axes = plt.subplots(len(ids), 1, figsize=(9, 1.9 * len(ids)), squeeze=False)
    for ax, row_id in zip(axes[:, 0], ids):
        row = find_row(ds, row_id)
        lm, m = row["spoof_logmag"], row["mask"].astype(bool)
        ext = (0, lm.shape[0] * hop / sr, 0, sr / 2000)
        ax.imshow(lm.T, origin="lower", aspect="auto", cmap="gray_r", extent=ext)
        overlay = np.zeros(m.T.shape + (4,))
        overlay[m.T] = (0.9, 0.1, 0.1, 0.85)
        ax.imshow(overlay, origin="lower", aspect="auto", extent=ext)
        ax.set_title(f"{row['vocoder']} — {row_id} ({row['split']}, mask {m.mean():.1%})", fontsize=8)
        ax.set_ylabel("kHz", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time (s)", fontsize=8)
    return save_figure(fig, out, dpi=90)


# ----------------------------------------------------------------------------------------------- template + YAML


def load_template(source: str, path: str | Path | None = None) -> tuple[dict, str]:
    """(front-matter dict, body) of the source's template (or of ``path``)."""
    import yaml

    p = Path(path) if path else templates_dir() / f"{source}.md"
    if not p.exists():
        have = ", ".join(sorted(q.stem for q in templates_dir().glob("*.md"))) or "none"
        raise CardError(f"no card template {p} for source {source!r} (templates: {have}); pass --template FILE")
    text = p.read_text(encoding="utf-8")
    m = re.match(r"^---\n(.*?)\n---\n(.*)$", text, flags=re.S)
    if not m:
        raise CardError(f"{p}: a card template starts with a YAML header between '---' lines")
    meta = yaml.safe_load(m.group(1)) or {}
    if not isinstance(meta, dict):
        raise CardError(f"{p}: the YAML header must be a mapping")
    return meta, m.group(2)


def split_features(ds: str | Path) -> dict:
    """The ``datasets.Features`` of the first shard of each split (the builder embeds them)."""
    from datasets import Features

    out = {}
    for split, paths in check_complete(ds).items():
        out[split] = Features.from_arrow_schema(open_shard(sorted(paths)[0]).schema_arrow)
    return out


def without_withheld(feats):
    """Features without the withheld columns (mask, diff)."""
    from datasets import Features

    return Features({k: v for k, v in feats.items() if k not in WITHHELD_COLUMNS})


def _split_info(paths: list[Path], name: str):
    from datasets import SplitInfo

    rows = nbytes = 0
    for p in paths:
        md = open_shard(p).metadata
        rows += md.num_rows
        nbytes += sum(md.row_group(g).total_byte_size for g in range(md.num_row_groups))
    return SplitInfo(name=name, num_bytes=nbytes, num_examples=rows)


def card_yaml(meta: dict, ds: str | Path, *, withheld: bool, pretty_name: str | None = None,
              license: str | None = None, shard_paths_by_split: dict[str, list[Path]] | None = None) -> tuple[str, dict]:
    """The YAML header (text) and its card-data dict: template fields + configs + dataset_info + size."""
    from datasets import DatasetInfo, SplitDict
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    shards = shard_paths_by_split or check_complete(ds)
    splits = sorted(shards, key=_split_key)
    feats = split_features(ds)
    public = [s for s in splits if not (withheld and s == "test")]
    if not public:
        raise CardError(f"{ds}: nothing left to publish with masks once the test split is withheld")
    meta = dict(meta)
    meta.pop("vocmask", None)
    tags = list(dict.fromkeys(BASE_TAGS + list(meta.pop("tags", []) or [])))
    configs = [{"config_name": "default", "default": True, "data_files": [{"split": s, "path": f"data/{s}-*"} for s in public]}]
    infos = {}

    def info(names: list[str], f) -> DatasetInfo:
        sd = SplitDict()
        for s in names:
            sd.add(_split_info(shards[s], s))
        return DatasetInfo(features=f, splits=sd, download_size=sum(p.stat().st_size for s in names for p in shards[s]),
                           dataset_size=sum(sd[s].num_bytes for s in names))

    infos["default"] = info(public, feats[public[0]])
    if withheld and "test" in splits:
        configs.append({"config_name": BENCHMARK_CONFIG, "data_files": [{"split": "test", "path": "data/test-*"}]})
        infos[BENCHMARK_CONFIG] = info(["test"], without_withheld(feats["test"]))
    total = sum(open_shard(p).metadata.num_rows for ps in shards.values() for p in ps)
    fields = {
        **meta,
        "pretty_name": pretty_name or meta.get("pretty_name"),
        "license": license or meta.get("license", "other"),
        "task_categories": list(dict.fromkeys(["audio-classification"] + list(meta.get("task_categories") or []))),
        "tags": tags,
        "size_categories": [size_category(total)],
        "configs": configs,
    }
    data = DatasetCardData(**fields)
    DatasetInfosDict(infos).to_dataset_card_data(data)
    return data.to_yaml(), data.to_dict()


def render_card(ds: str | Path, out: str | Path | None = None, *, repo_id: str | None = None, withheld: bool = False,
                pretty_name: str | None = None, license: str | None = None, template: str | Path | None = None,
                figure: bool = True, shard_paths_by_split: dict[str, list[Path]] | None = None) -> Path:
    """Write the card (``out``, default ``DS/README.md``) and its figures next to it; returns the card path.

    ``withheld``: the card describes the public tree of ``annotate publish --withhold-test-masks`` (test
    split in its own config, without mask/diff); the figure then never shows a test row.
    """
    ds = Path(ds)
    cfg = build_config(ds)
    source = cfg.get("source", "manifest")
    meta, body = load_template(source, template)
    out = Path(out) if out else ds / "README.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    yaml_text, data = card_yaml(meta, ds, withheld=withheld, pretty_name=pretty_name, license=license,
                                shard_paths_by_split=shard_paths_by_split)
    splits = split_names(ds)
    public = [s for s in splits if not (withheld and s == "test")]
    figure_md = "_(no figure: rendered with --no-figure)_"
    stats = collect_stats(ds)
    if figure and not stats["masks"]:  # frame labels only: the row picture shows them
        if ids := pick_rows(ds, public):
            from ..show import show

            show(ds, ids[0], out.parent / ROW_FIGURE_NAME)
            figure_md = f"One utterance (spoof log-magnitude and its frame labels):\n\n![{ids[0]}]({ROW_FIGURE_NAME})"
    elif figure:
        ids = pick_rows(ds, public)
        if ids:
            from ..show import show

            mask_figure(ds, ids, out.parent / FIGURE_NAME)
            show(ds, ids[0], out.parent / ROW_FIGURE_NAME)
            figure_md = (f"![Example masks: spoof log-magnitude with the mask in red, one row per vocoder]({FIGURE_NAME})\n\n"
                         f"One pair in detail (real, spoof, smoothed spoof, D, mask — the paper's Fig. 1):\n\n"
                         f"![{ids[0]}]({ROW_FIGURE_NAME})")
    groups = stats["groups"]
    sr = stats["sample_rate"]
    vocoders = sorted({v for _, v in groups})
    speakers = set().union(*[s.speakers for s in groups.values()]) if groups else set()
    rows = sum(s.rows for s in groups.values())
    hours = sum(s.samples for s in groups.values()) / sr / 3600
    cov = np.concatenate([np.asarray(s.coverage) for s in groups.values()])
    repo = repo_id or "ORG/NAME"
    summary = "\n".join([
        f"- **Rows** ({'spoof utterances with their aligned real twins' if stats['masks'] else 'utterances with frame labels, no real twins'}): {rows} in splits "
        + ", ".join(f"{s} {sum(g.rows for (sp, _), g in groups.items() if sp == s)}" for s in splits),
        f"- **Audio**: {hours:.3f} hours of {'spoof speech (as many of real)' if stats['masks'] else 'speech'}, {sr} Hz",
        f"- **Vocoders** ({len(vocoders)}): {', '.join(vocoders)}",
        f"- **Speakers**: {len(speakers)}",
        (f"- **Mask coverage**: {_pct(float(np.nanmean(cov)) if np.isfinite(cov).any() else np.nan)}% of time-frequency bins on average"
         if stats["masks"] else "- **Masks**: none (no real twins); `frame_labels` give the spoofed fraction of every STFT frame"),
        f"- **Built with** vocmask {__version__} (dataset format {cfg.get('version', '?')}) from source `{source}`"
        + (f"; test masks withheld (config `{BENCHMARK_CONFIG}`)" if withheld else ""),
    ] + ([f"- **Empty splits**: {', '.join(empty)} — no rows (no pairs in the corpus, or every pair rejected; "
          "see the rejects below), so the dataset has no such split"] if (empty := empty_splits(ds)) else []))
    values = {
        "pretty_name": data.get("pretty_name") or f"vocmask {source}",
        "repo_id": repo,
        "summary": summary,
        "usage": usage_text(repo, withheld),
        "columns": columns_text(withheld),
        "split_table": split_table(stats),
        "alignment": alignment_table(stats),
        "rejects": rejects_block(ds),
        "figure": figure_md,
        "method": method_text(cfg),
        "build_config": config_table(cfg),
        "benchmark": withheld_text(withheld),
        "paper_citation": PAPER_CITATION,
        "vocoders": ", ".join(vocoders),
        "n_vocoders": str(len(vocoders)),
        "n_speakers": str(len(speakers)),
        "license": str(data.get("license")),
        "mask_percent": f"{100 * (1 - cfg['mask']['quantile']):.0f}",
    }
    assert set(values) == set(PLACEHOLDERS)
    try:
        text = string.Template(body).substitute(values)
    except KeyError as e:
        raise CardError(f"card template for {source!r} uses unknown placeholder ${{{e.args[0]}}} (known: {', '.join(sorted(values))})") from None
    except ValueError as e:
        raise CardError(f"card template for {source!r}: {e} (write a literal $ as $$)") from None
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(f"---\n{yaml_text}\n---\n{text}", encoding="utf-8")
    os.replace(tmp, out)
    return out


def template_warning(source: str, template: str | Path | None = None) -> str | None:
    """The template's ``vocmask.publish_warning`` (e.g. a licence that restricts redistribution), if any."""
    meta, _ = load_template(source, template)
    return ((meta.get("vocmask") or {}).get("publish_warning") or None)
