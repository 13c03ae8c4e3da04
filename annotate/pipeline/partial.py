"""`annotate partial`: partially spoofed utterances made from a built dataset's aligned pairs.

For every row, K spans of the spoof are spliced into its real twin (raised-cosine crossfades; span
boundaries moved to the quietest nearby point), and the result is annotated like a built row:

- labels are exact to the sample: a sample is spoofed when its spoof weight is > 0, i.e. inside a span
  ``[start, end)`` crossfades included; everywhere else the output equals the real bit for bit;
- ``frame_labels`` is the spoofed fraction of each STFT frame's cell (:func:`annotate.core.dataset.frame_labels_from_samples`);
- the T-F mask is Eq. 2 of the spliced signal against the real, restricted to the frames whose analysis
  window (plus the Gaussian's time footprint) reaches a span, where D is exactly 0 by construction, and it
  never keeps a bin with D = 0: ``mask = (D > quantile(D, q)) & (D > 0)`` (when the spans cover less than
  ``1 - q`` of the plane the quantile is 0 and every bin the splice changed is kept).

One bona fide row per real utterance (and augmentation copy) is written too: the real alone, all-zero
labels, an empty mask, vocoder ``bonafide``. Output shards keep the source shard names; every draw comes
from ``np.random.default_rng([seed, crc32(row id)])``, so the output depends only on the seed and the input.
"""
from __future__ import annotations

import json
import shutil
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.audio import decode_bytes, encode_flac
from .build import float16_saturated
from ..core.dataset import (
    PARTIAL_COLUMNS,
    ShardWriter,
    build_config,
    frame_labels_from_samples,
    partial_features,
    shard_paths,
)
from ..core.spectral import MaskConfig, STFTConfig, log_magnitude, quantile, relative_difference, stft

BONAFIDE = "bonafide"


class PartialError(ValueError):
    """A bad input or parameter of `annotate partial` (one line for the user, exit code 2)."""


@dataclass(frozen=True)
class PartialConfig:
    """How spoof spans are drawn and spliced (recorded in ``build.json`` under ``partial``)."""

    segments: int = 1  # spoof spans per utterance
    min_len: float = 0.2  # seconds, span length drawn uniformly in [min_len, max_len]
    max_len: float = 1.5
    max_cover: float = 0.7  # spans are shortened proportionally when they would cover more of the utterance
    crossfade: float = 0.005  # seconds of raised-cosine fade at each span end (inside the span)
    search: float = 0.05  # seconds either side of a drawn boundary searched for the quietest point
    energy_window: float = 0.01  # seconds of the moving average giving the short-time energy
    seed: int = 0
    bonafide: bool = True  # also write one bona fide row per real utterance

    def validate(self) -> None:
        if self.segments < 1:
            raise PartialError(f"--segments must be >= 1, got {self.segments}")
        if not 0 < self.min_len <= self.max_len:
            raise PartialError(f"need 0 < --min-len <= --max-len, got {self.min_len} and {self.max_len}")
        if self.min_len < 2 * self.crossfade:
            raise PartialError(f"--min-len {self.min_len} s is shorter than two crossfades ({2 * self.crossfade} s)")
        if not 0 < self.max_cover < 1:
            raise PartialError(f"max_cover must be in (0, 1), got {self.max_cover}")

    def to_dict(self) -> dict:
        return asdict(self)


def row_rng(seed: int, row_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(row_id.encode())])


def short_time_energy(real: np.ndarray, spoof: np.ndarray, window: int) -> np.ndarray:
    """Moving average of ``real**2 + spoof**2`` over ``window`` samples (same length as the inputs)."""
    e = real.astype(np.float64) ** 2 + spoof.astype(np.float64) ** 2
    return np.convolve(e, np.ones(max(1, window)) / max(1, window), mode="same")


def draw_spans(n: int, energy: np.ndarray, rng: np.random.Generator, cfg: PartialConfig, sr: int) -> list[tuple[int, int]]:
    """K non-overlapping ``[start, end)`` spans in ``n`` samples, each boundary moved to the quietest sample
    within ``search`` of its draw (spans keep >= two crossfades, and gaps >= two crossfades between them)."""
    xf = int(round(cfg.crossfade * sr))
    gap = 2 * xf
    k = cfg.segments
    lengths = rng.uniform(cfg.min_len, cfg.max_len, size=k) * sr
    budget = cfg.max_cover * n - (k - 1) * gap
    if budget < k * 2 * xf:
        raise PartialError(f"{n} samples cannot hold {k} spans: use fewer --segments")
    if lengths.sum() > budget:
        lengths *= budget / lengths.sum()
    lengths = np.maximum(lengths.astype(np.int64), 2 * xf)
    free = n - int(lengths.sum()) - (k - 1) * gap
    cuts = np.sort(rng.integers(0, free + 1, size=k))
    gaps = np.diff(np.concatenate([[0], cuts]))  # free samples before each span
    spans, pos = [], 0
    for i in range(k):
        start = pos + int(gaps[i]) + (gap if i else 0)
        spans.append([start, start + int(lengths[i])])
        pos = start + int(lengths[i])
    s = int(round(cfg.search * sr))
    bounds = [b for sp in spans for b in sp]
    for j in range(len(bounds)):
        lo = bounds[j - 1] + (2 * xf if j % 2 else gap) if j else 0  # after the previous boundary
        hi = bounds[j + 1] - (2 * xf if j % 2 == 0 else gap) if j + 1 < len(bounds) else n  # before the next one
        a, b = max(lo, bounds[j] - s), min(hi, bounds[j] + s)
        if a <= b:
            bounds[j] = a + int(np.argmin(energy[a : b + 1 if b < n else n]))
    return [(bounds[2 * i], bounds[2 * i + 1]) for i in range(k)]


def splice_weights(n: int, spans: list[tuple[int, int]], xf: int) -> np.ndarray:
    """Spoof weight per sample: 1 inside spans, raised-cosine ramps (all values in (0, 1)) over the first and
    last ``xf`` samples of each span, exactly 0 outside."""
    w = np.zeros(n, dtype=np.float32)
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(xf) + 0.5) / xf)).astype(np.float32) if xf else np.zeros(0, np.float32)
    for a, b in spans:
        if b - a < 2 * xf:
            raise ValueError(f"span [{a}, {b}) is shorter than two crossfades of {xf} samples")
        w[a:b] = 1.0
        w[a : a + xf] = ramp
        w[b - xf : b] = ramp[::-1]
    return w


def quantise16(x: np.ndarray) -> np.ndarray:
    """The samples :func:`annotate.core.audio.encode_flac` stores (16-bit grid), as float32."""
    y = np.rint(np.multiply(x, np.float32(32768.0), dtype=np.float32))
    return (np.clip(y, -32768, 32767) / np.float32(32768.0)).astype(np.float32)


def touched_frames(weights: np.ndarray, n_frames: int, stft_cfg: STFTConfig, mask_cfg: MaskConfig) -> np.ndarray:
    """Frames whose analysis window, widened by the Gaussian's time footprint (and 2 samples for the
    reflect padding at the ends), contains a spliced sample; D is exactly 0 at every other frame."""
    csum = np.concatenate([[0], np.cumsum(weights > 0)])
    n, half, hop = len(weights), stft_cfg.n_fft // 2, stft_cfg.hop_length
    centres = np.arange(n_frames) * hop
    lo = np.clip(centres - half - 2, 0, n)
    hi = np.clip(centres + half + 2, 0, n)
    hit = csum[hi] > csum[lo]
    r = mask_cfg.time_size // 2
    if r:
        hit = np.convolve(hit.astype(np.int64), np.ones(2 * r + 1, dtype=np.int64), mode="same") > 0
    return hit


def partial_mask(mixed: np.ndarray, real: np.ndarray, weights: np.ndarray, stft_cfg: STFTConfig,
                 mask_cfg: MaskConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mask uint8, D float32, |S(mixed)|)``: Eq. 2 of the spliced signal against the real (module docstring)."""
    mag_m = np.abs(stft(mixed, stft_cfg))
    mag_r = np.abs(stft(real, stft_cfg))
    d = relative_difference(mag_m, mag_r, mask_cfg).astype(np.float32, copy=True)
    d[~touched_frames(weights, d.shape[0], stft_cfg, mask_cfg)] = 0.0
    q = quantile(d, mask_cfg.quantile)
    mask = ((d > q) & (d > 0)).astype(np.uint8)
    return mask, d, mag_m


def partial_row(row: dict, cfg: PartialConfig, stft_cfg: STFTConfig, mask_cfg: MaskConfig) -> dict:
    """The partially spoofed row made from one built row (``row``: its columns as read by ``iter_rows``)."""
    real, sr = decode_bytes(row["real_audio"]["bytes"])
    spoof, sr2 = decode_bytes(row["spoof_audio"]["bytes"])
    if len(real) != len(spoof) or sr != sr2:
        raise PartialError(f"row {row['id']}: real ({len(real)} @ {sr} Hz) and spoof ({len(spoof)} @ {sr2} Hz) differ; "
                           "rebuild the dataset with `annotate build`")
    rng = row_rng(cfg.seed, row["id"])
    energy = short_time_energy(real, spoof, int(round(cfg.energy_window * sr)))
    spans = draw_spans(len(real), energy, rng, cfg, sr)
    w = splice_weights(len(real), spans, int(round(cfg.crossfade * sr)))
    mixed = quantise16(real + w * (spoof - real))
    mask, d, mag_m = partial_mask(mixed, real, w, stft_cfg, mask_cfg)
    labels = frame_labels_from_samples(w > 0, stft_cfg.hop_length, mask.shape[0])
    return {**_common(row), "id": f"partial__{row['id']}", "vocoder": row["vocoder"],
            "spoof_audio": {"bytes": encode_flac(mixed, sr), "path": f"partial__{row['spoof_audio'].get('path') or row['id']}"},
            "spoof_logmag": log_magnitude(mag_m), "mask": mask, "diff": float16_saturated(d),
            "frame_labels": labels, "spans": [[int(a), int(b)] for a, b in spans]}


def bonafide_row(row: dict, stft_cfg: STFTConfig) -> dict:
    """The real of ``row`` alone: all-zero labels and mask, ``vocoder`` = bonafide."""
    real, _ = decode_bytes(row["real_audio"]["bytes"])
    mag = np.abs(stft(real, stft_cfg))
    copy = int(row.get("augment_copy") or 0)
    rid = f"{BONAFIDE}__{row['utt_id']}" + (f"__aug{copy}" if copy else "")
    return {**_common(row), "id": rid, "vocoder": BONAFIDE, "spoof_audio": row["real_audio"],
            "spoof_logmag": log_magnitude(mag), "mask": np.zeros(mag.shape, np.uint8),
            "diff": np.zeros(mag.shape, np.float16), "frame_labels": np.zeros(mag.shape[0], np.float32), "spans": []}


def _common(row: dict) -> dict:
    keys = ("utt_id", "speaker", "source", "split", "real_audio", "num_samples", "offset", "align_score",
            "rawboost", "rawboost_seed", "augment_copy")
    return {k: row[k] for k in keys}


def make_partial(ds: str | Path, out: str | Path, cfg: PartialConfig = PartialConfig(), *, overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Write the partially spoofed dataset of ``ds`` into ``out``; returns the summary (also summary.json)."""
    from tqdm.auto import tqdm

    from ..core.dataset import iter_shard_rows, open_shard

    cfg.validate()
    ds, out = Path(ds), Path(out)
    build = build_config(ds)
    paths = shard_paths(ds)
    if not paths:
        raise PartialError(f"{ds / 'data'} holds no shards: build the dataset first (`annotate build`)")
    names = open_shard(paths[0]).schema_arrow.names
    if any(c in names for c in PARTIAL_COLUMNS):
        raise PartialError(f"{ds} is already a partially spoofed dataset; pass the dataset built by `annotate build`")
    if out.resolve() == ds.resolve():
        raise PartialError("--out must differ from the input dataset")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise PartialError(f"{out} is not empty; choose another --out or pass --overwrite")
        for sub in ("data", ".parts"):
            shutil.rmtree(out / sub, ignore_errors=True)
    stft_cfg, mask_cfg = STFTConfig(**build["stft"]), MaskConfig(**build["mask"])
    (out / "data").mkdir(parents=True, exist_ok=True)
    config = {**build, "partial": cfg.to_dict(), "partial_of": ds.name}
    (out / "build.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    schema = partial_features(stft_cfg.n_freq, stft_cfg.sample_rate).arrow_schema
    total = sum(open_shard(p).metadata.num_rows for p in paths)
    t0 = time.perf_counter()
    counts = {"rows_in": total, "partial_rows": 0, "bonafide_rows": 0, "rejects": 0}
    per_split: dict[str, dict[str, int]] = {}
    spoof_share: list[float] = []
    seen: set[tuple] = set()
    rejects = []
    bar = tqdm(total=total, desc="annotate partial", unit="row", disable=not progress)
    for path in paths:
        writer = ShardWriter(out / "data" / path.name, schema, metadata={"build": config})
        try:
            for row in iter_shard_rows(path):
                split = per_split.setdefault(row["split"], {"partial": 0, "bonafide": 0})
                key = (row["split"], row["utt_id"], row.get("augment_copy"))
                if cfg.bonafide and key not in seen:
                    seen.add(key)
                    writer.write(bonafide_row(row, stft_cfg))
                    counts["bonafide_rows"] += 1
                    split["bonafide"] += 1
                try:
                    r = partial_row(row, cfg, stft_cfg, mask_cfg)
                except PartialError as e:
                    rejects.append({"id": row["id"], "reason": str(e)})
                    counts["rejects"] += 1
                else:
                    writer.write(r)
                    counts["partial_rows"] += 1
                    split["partial"] += 1
                    spoof_share.append(float(sum(b - a for a, b in r["spans"]) / max(1, r["num_samples"])))
                bar.update(1)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    bar.close()
    summary = {"source_dataset": str(ds), **counts, "rows_out": counts["partial_rows"] + counts["bonafide_rows"],
               "per_split": per_split, "spoofed_share_mean": float(np.mean(spoof_share)) if spoof_share else 0.0,
               "config": cfg.to_dict(), "seconds_taken": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "rejects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rejects))
    return summary
