"""The embedded demo corpus: a small parallel real/vocoded corpus generated offline and deterministically.

"Real" utterances come from a source-filter speech synthesiser (glottal pulses with moving f0,
aspiration, fricatives and stop bursts, formant transitions through cascaded resonators); each is
re-synthesised by real vocoding methods (mel + Griffin-Lim, WORLD, LPC) and low-bit-rate codecs (MP3 and
Opus through libsndfile, as in Codecfake-style data), and the spoofs get vocoder
framing effects (length a multiple of the hop, edge shifts) whose exact offsets are written to
``truth.json``. The layout is LibriSeVoc's (docs/layouts.md)::

    root/gt/{ID}.wav  root/{vocoder}/{ID}_gen.wav  root/{train,dev,test}.txt  root/truth.json  root/.complete

Offset convention (the aligner's): ``offset = position in spoof - position in real`` in samples at the
corpus rate, so ``spoof[n] ~ real[n - offset]``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from ...pipeline.splits import assign_groups
from ...pipeline.vocoders import codec, f0_track as _f0_track, intrinsic_delay, lpc as voc_lpc, world as voc_world, xcorr_lag
from .config import CODEC_LEVEL, MARKER, SPLIT_FRACTIONS, VOCODERS, DemoConfig, DemoError
from .synth import Speaker, make_speakers, synth_utterance
from .vocoders import frame_effects, voc_griffinlim


def _write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    sf.write(str(path), np.clip(x, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")


def _pcm16(x: np.ndarray) -> np.ndarray:
    """What a PCM_16 round trip gives back (vocoders re-synthesise the real file as written)."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0) / 32767.0


def utterance_ids(cfg: DemoConfig, speakers: list[Speaker]) -> list[tuple[Speaker, str]]:
    """(speaker, LibriTTS-style id) for every utterance, e.g. ``101_5000_000003_000000``."""
    rng = np.random.default_rng([cfg.seed, 2])
    out = []
    for spk in speakers:
        num = int(rng.integers(0, 20))
        for u in range(cfg.utts_per_speaker):
            chap = spk.chapters[min(len(spk.chapters) - 1, u * len(spk.chapters) // cfg.utts_per_speaker)]
            num += int(rng.integers(1, 6))
            out.append((spk, f"{spk.id}_{chap}_{num:06d}_000000"))
    return out


def assign_splits(cfg: DemoConfig, utts: list[tuple[Speaker, str]]) -> dict[str, list[str]]:
    """About 60/20/20 of the utterances, each speaker spread over the splits (as in LibriSeVoc): each speaker's
    utterances get evenly spaced keys in a seeded order, and :func:`annotate.pipeline.splits.assign_groups`
    cuts the utterances by those keys (highest first: test, then dev, the rest train)."""
    rng = np.random.default_rng([cfg.seed, 3])
    keys = []
    by_spk: dict[str, list[str]] = {}
    for spk, uid in utts:
        by_spk.setdefault(spk.id, []).append(uid)
    for ids in by_spk.values():
        perm = rng.permutation(len(ids))
        jitter = rng.uniform(0, 1)
        for rank, j in enumerate(perm):
            keys.append(((rank + jitter) / len(ids), ids[j]))
    order = [uid for _, uid in sorted(keys, reverse=True)]
    split_of = assign_groups(order, cfg.seed, SPLIT_FRACTIONS, order=order)
    return {s: sorted(u for u, v in split_of.items() if v == s) for s in ("train", "dev", "test")}


def generate(root: str | Path, *, n_speakers: int = 4, utts_per_speaker: int = 8, seed: int = 0,
             sample_rate: int = 24000, vocoders: tuple[str, ...] | list[str] = VOCODERS) -> Path:
    """Write the demo corpus into ``root`` (LibriSeVoc layout, truth.json, marker last); returns ``root``."""
    cfg = DemoConfig(n_speakers, utts_per_speaker, seed, sample_rate, tuple(vocoders))
    root = Path(root).expanduser()
    check_target(root)
    if (root / MARKER).is_file():  # an older demo corpus: drop what it wrote, so no stale file survives
        (root / MARKER).unlink()
        for name in _OWNED:
            path = root / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    sr = cfg.sample_rate
    (root / "gt").mkdir(exist_ok=True)
    for v in cfg.vocoders:
        (root / v).mkdir(exist_ok=True)

    speakers = make_speakers(cfg)
    utts = utterance_ids(cfg, speakers)
    truth: dict[str, int] = {}
    for ui, (spk, uid) in enumerate(utts):
        x = _pcm16(synth_utterance(spk, np.random.default_rng([cfg.seed, 10, ui]), sr))
        _write_wav(root / "gt" / f"{uid}.wav", x, sr)
        f0t = _f0_track(x, sr, 5.0) if {"world", "lpc"} & set(cfg.vocoders) else None
        for v in cfg.vocoders:
            vrng = np.random.default_rng([cfg.seed, 20, ui, VOCODERS.index(v)])
            if v == "griffinlim":
                y = voc_griffinlim(x, sr, vrng)
            elif v == "world":
                y = voc_world(x, sr, vrng, f0t)
            elif v == "lpc":
                y = voc_lpc(x, sr, vrng, f0t)
            else:
                y = codec(x, sr, vrng, kind=v, level=CODEC_LEVEL)
            y = y * (0.5 / max(0.5, np.max(np.abs(y)) + 1e-9))  # no clipping; keeps the real's level otherwise
            delay = xcorr_lag(x, y, max_lag=int(0.25 * sr)) if v in ("mp3", "opus") else intrinsic_delay(x, y)
            y, shift = frame_effects(y, vrng, sr)
            _write_wav(root / v / f"{uid}_gen.wav", y, sr)
            truth[f"{v}__{uid}"] = int(shift + delay)

    for split, ids in assign_splits(cfg, utts).items():
        (root / f"{split}.txt").write_text("".join(f"{u}.wav\n" for u in ids))
    (root / "truth.json").write_text(json.dumps(dict(sorted(truth.items())), indent=1) + "\n")
    tmp = root / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(cfg.to_dict(), sort_keys=True) + "\n")
    os.replace(tmp, root / MARKER)
    return root


def load_truth(root: str | Path) -> dict[str, int]:
    """``{vocoder}__{ID}`` -> true offset (samples at the corpus rate, spoof position - real position)."""
    return {k: int(v) for k, v in json.loads((Path(root) / "truth.json").read_text()).items()}


_OWNED = ("gt", *VOCODERS, "train.txt", "dev.txt", "test.txt", "truth.json", f"{MARKER}.tmp")


def check_target(root: Path) -> None:
    """Refuse to write into anything but a new or empty folder or an earlier demo corpus (never a user's data)."""
    if root.exists() and not root.is_dir():
        raise DemoError(f"demo corpus folder {root} is a file: pass a folder path")
    if root.is_dir() and not (root / MARKER).is_file() and any(root.iterdir()):
        raise DemoError(f"{root} exists and is not a demo corpus (no {MARKER} marker): pass an empty or new folder")
