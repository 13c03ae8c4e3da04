"""WaveFake reader: LJSpeech and JSUT re-synthesised by GAN/flow vocoders (Frank & Schönherr, 2021).

Layout as downloaded (zenodo record 5642694; reals are separate downloads)::

    ROOT/generated_audio/
        ljspeech_{melgan,melgan_large,parallel_wavegan,multi_band_melgan,full_band_melgan}/LJ001-0001_gen.wav
        ljspeech_hifiGAN/LJ001-0001_generated.wav
        ljspeech_waveglow/LJ001-0001.wav                          (no suffix)
        jsut_{multi_band_melgan,parallel_wavegan}/BASIC5000_0001_gen.wav
        common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech/gen_0.wav   (full TTS, see below)
    reals: LJSpeech-1.1/wavs/LJ001-0001.wav (22.05 kHz), jsut_ver1.1/basic5000/wav/BASIC5000_0001.wav (48 kHz)

``ROOT`` is the folder holding ``generated_audio/`` (or that folder itself). Real corpora are looked
up, in order, under ``--real-root``, ``ROOT`` and ROOT's parent (each may hold ``LJSpeech-1.1/`` and
``jsut_ver1.1/``, or be ``LJSpeech-1.1/`` / ``jsut_ver1.1/`` itself).

Pairing strips exactly one known suffix (``_generated``, then ``_gen``; none for waveglow) from the
stem; the rest must be a real file name. Vocoder = folder name (``ljspeech_melgan``); speaker
``LJ`` / ``JSUT`` (single-speaker corpora); split ``None`` (WaveFake has no official split).

Skipped with a logged warning, not rejects: the full-TTS folder (Common Voice prompts through
Conformer-FastSpeech2 + PWG: no recording of those sentences exists, so no real twin), any folder
of an unknown corpus, and the folders of a corpus whose reals are not found anywhere (a
``SourceError`` if no corpus's reals are found). A single spoof without its real is a reject.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .base import Pair, Reject, SourceError, dedupe, pair_id, require_dir, scan_files

log = logging.getLogger(__name__)

SOURCE = "wavefake"
AUDIO_EXTS = (".wav", ".flac")
SUFFIXES = ("_generated", "_gen")  # checked in this order: "_generated" does not end with "_gen"
TTS_FOLDER = "common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech"


@dataclass(frozen=True)
class Corpus:
    """A real corpus that WaveFake re-synthesised: folder prefix, speaker, where its wavs live."""

    prefix: str
    speaker: str
    top: str          # the corpus folder name as downloaded
    wav_subdir: str   # the wav folder inside it


CORPORA = (
    Corpus("ljspeech", "LJ", "LJSpeech-1.1", "wavs"),
    Corpus("jsut", "JSUT", "jsut_ver1.1", "basic5000/wav"),
)


def find_root(root: str | Path | None) -> Path:
    """The ``generated_audio/`` folder: ``root/generated_audio`` or ``root`` itself."""
    if root is None:
        raise SourceError("--root is required for --source wavefake (the folder holding generated_audio/)")
    base = require_dir(root, "WaveFake root")
    if (base / "generated_audio").is_dir():
        return base / "generated_audio"
    if base.name == "generated_audio" or any(d.name.startswith(c.prefix + "_") for d in base.iterdir() for c in CORPORA):
        return base
    raise SourceError(f"no generated_audio/ folder under {base}: expected generated_audio/ljspeech_melgan/LJ001-0001_gen.wav")


def _real_dir(corpus: Corpus, bases: list[Path]) -> Path | None:
    for b in bases:
        for cand in (b / corpus.top / corpus.wav_subdir, b / corpus.wav_subdir):
            if cand.is_dir():
                return cand
    return None


def _audio_names(folder: Path, rejects: list[Reject] | None = None) -> list[str]:
    """Audio file names of ``folder``; link loops and dangling links go to ``rejects`` (when given)."""
    files, bad = scan_files(folder, AUDIO_EXTS, lambda n: pair_id(folder.name, real_stem(n.rsplit(".", 1)[0])),
                            skip_hidden=True)
    if rejects is not None:
        rejects += bad
    return [e.name for e in files]


def real_stem(spoof_stem: str) -> str:
    """The real utterance id of a spoof file stem: strip one known suffix exactly, else keep it."""
    for s in SUFFIXES:
        if spoof_stem.endswith(s) and len(spoof_stem) > len(s):
            return spoof_stem[: -len(s)]
    return spoof_stem


def read(root: str | Path | None, *, real_root: str | Path | None = None, source: str = SOURCE) -> tuple[list[Pair], list[Reject]]:
    """List every (real, spoof) pair of a WaveFake download."""
    gen = find_root(root)
    top = gen.parent if gen.name == "generated_audio" else gen
    bases = ([require_dir(real_root, "WaveFake real corpora folder (--real-root)")] if real_root is not None else [])
    bases += [top, top.parent]
    folders = sorted(d for d in gen.iterdir() if d.is_dir() and not d.name.startswith("."))

    corpus_of: dict[str, Corpus] = {}
    for d in folders:
        c = next((c for c in CORPORA if d.name.startswith(c.prefix + "_")), None)
        if c is None:
            why = ("full TTS outputs of Common Voice prompts" if d.name == TTS_FOLDER else "not an ljspeech_*/jsut_* vocoder folder")
            log.warning("wavefake: skipping %s (%s: no real twins)", d, why)
        else:
            corpus_of[d.name] = c

    real_dirs = {c.prefix: _real_dir(c, bases) for c in CORPORA if c in corpus_of.values()}
    if corpus_of and not any(real_dirs.values()):
        wanted = " or ".join(f"{c.top}/{c.wav_subdir}" for c in CORPORA if c.prefix in real_dirs)
        raise SourceError(f"WaveFake reals not found: no {wanted} under {', '.join(map(str, bases))}; "
                          "pass --real-root DIR (the folder holding LJSpeech-1.1/ and jsut_ver1.1/)")
    real_names = {p: set(_audio_names(d)) for p, d in real_dirs.items() if d is not None}

    pairs: list[Pair] = []
    rejects: list[Reject] = []
    for d in folders:
        c = corpus_of.get(d.name)
        if c is None:
            continue
        rdir = real_dirs[c.prefix]
        if rdir is None:
            log.warning("wavefake: skipping %s: %s/%s not found under %s (pass --real-root)",
                        d, c.top, c.wav_subdir, ", ".join(map(str, bases)))
            continue
        vocoder = d.name
        for name in _audio_names(d, rejects):
            stem = name.rsplit(".", 1)[0]
            utt = real_stem(stem)
            pid = pair_id(vocoder, utt)
            real = f"{utt}.wav"
            if real not in real_names[c.prefix]:
                real = f"{utt}.flac" if f"{utt}.flac" in real_names[c.prefix] else None
            if real is None:
                rejects.append(Reject(pid, str(d / name), f"no real twin: expected {rdir / (utt + '.wav')}"))
                continue
            pairs.append(Pair(pid, utt, str(rdir / real), str(d / name), vocoder, c.speaker, source, None))
    pairs, dups = dedupe(sorted(pairs, key=lambda p: (p.id, p.spoof_path)))
    return pairs, rejects + dups
