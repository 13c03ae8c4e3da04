"""Rows of corpora that ship their own segment labels and no real twin (:class:`annotate.sources.base.LabelledSpoof`,
e.g. PartialSpoof): the spoof alone, ``frame_labels`` from the segment labels, no T-F mask.

Per utterance: decode + resample -> (RawBoost of the spoof alone, optional) -> STFT -> one row with the columns of
:func:`annotate.core.dataset.partial_features`, where ``real_audio``, ``mask`` and ``diff`` are null (nothing to
compare against), ``offset`` is 0 and ``align_score`` NaN (nothing was aligned). Segment ``k`` covers samples
``[k*L, (k+1)*L)`` with ``L = segment_seconds * sample_rate``; samples past the last segment take its label, and
labels that miss the audio's length by more than one segment (or 40 ms, whichever is longer) reject the
utterance. ``frame_labels`` is the spoofed fraction of each frame's cell
(:func:`annotate.core.dataset.frame_labels_from_samples`, as for ``annotate partial``); ``spans`` the spoofed
``[start, end)`` sample ranges.
"""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np

from ..core.audio import AudioError, encode_flac, load
from ..core.dataset import frame_labels_from_samples
from ..core.spectral import log_magnitude, stft

LENGTH_SLACK = 0.04  # seconds the labels may miss the audio by when that is more than one segment

if TYPE_CHECKING:
    from .build import BuildConfig
    from ..sources.base import LabelledSpoof


def sample_labels(labels: str, segment_seconds: float, n: int, sr: int) -> np.ndarray:
    """Per-sample spoof flags (bool, length ``n``) of segment labels (``'1'`` = spoofed); raises AudioError when the
    labels miss the audio's length by more than one segment or :data:`LENGTH_SLACK`, whichever is longer."""
    bits = np.frombuffer(labels.encode("ascii"), dtype=np.uint8) == ord("1")
    seg = round(segment_seconds * sr, 6)  # samples per segment (160 for 0.01 s at 16 kHz)
    if bits.size == 0 or seg <= 0:
        raise AudioError("no segment labels")
    covered = bits.size * seg
    if abs(covered - n) > max(seg, LENGTH_SLACK * sr) + 1:
        raise AudioError(f"labels and audio differ in length: {bits.size} segments of {segment_seconds} s cover "
                         f"{covered / sr:.3f} s, the audio lasts {n / sr:.3f} s")
    idx = np.minimum((np.arange(n) / seg).astype(np.int64), bits.size - 1)  # sample -> its segment
    return bits[idx]


def spans_of(flags: np.ndarray) -> list[list[int]]:
    """``[start, end)`` runs of True in a per-sample flag vector."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return [[int(a), int(b)] for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1))]


def labelled_rows(pair: "LabelledSpoof", cfg: "BuildConfig", plan: list[tuple[int, int, int]]) -> list[dict]:
    """All rows of one labelled utterance, one per ``(copy, algo, seed)`` of ``plan`` (the build's
    ``rawboost_plan``); raises AudioError to reject it."""
    sr = cfg.stft.sample_rate
    spoof, _ = load(pair.spoof_path, sr, resample_quality=cfg.resample_quality, min_sr=cfg.min_sample_rate)
    if len(spoof) < 4 * cfg.stft.n_fft:
        raise AudioError(f"too short: {len(spoof)} samples at {sr} Hz")
    flags = sample_labels(pair.labels, pair.segment_seconds, len(spoof), sr)
    spans = spans_of(flags)
    rows = []
    for copy, algo, seed in plan:
        s = spoof
        if algo:
            from ..core.rawboost import augment

            s = augment(spoof, algo, seed, sr, cfg.rawboost)
        mag = np.abs(stft(s, cfg.stft))
        rows.append({
            "id": pair.id if copy == 0 else f"{pair.id}__aug{copy}",
            "utt_id": pair.utt_id, "speaker": pair.speaker, "vocoder": pair.vocoder, "source": pair.source,
            "split": pair.split,
            "spoof_audio": {"bytes": encode_flac(s, sr), "path": os.path.basename(pair.spoof_path)},
            "real_audio": None, "spoof_logmag": log_magnitude(mag), "mask": None, "diff": None,
            "num_samples": int(len(s)), "offset": 0, "align_score": math.nan,
            "rawboost": int(algo), "rawboost_seed": int(seed), "augment_copy": int(copy),
            "frame_labels": frame_labels_from_samples(flags, cfg.stft.hop_length, mag.shape[0]), "spans": spans,
        })
    return rows
