"""voc.v4 reader: ASVspoof 2019 LA bona fide speech re-synthesised by four neural vocoders.

voc.v4 (Wang & Yamagishi, zenodo record 7314976, ``project09-voc.v4.tar``) ships only the vocoded
files; the real twins come from the user's own ASVspoof 2019 LA copy. Layout as downloaded::

    ROOT = voc.v4/            (or the folder holding it, e.g. project09-voc.v4/)
        wav/{vocoder}_{LA_T|LA_D}_{7 digits}.wav      hifigan, hn-sinc-nsf, hn-sinc-nsf-hifi, waveglow
        protocol.txt          lines like ``LA_0079 hifigan_LA_T_1138215 - hifigan spoof``
    REAL_ROOT = the folder holding LA/, or LA/ itself (LA/LA/ as some unzips leave it also works)
        LA/ASVspoof2019_LA_{train,dev}/flac/{LA_T|LA_D}_{7 digits}.flac
        LA/ASVspoof2019_LA_cm_protocols/*.txt        (optional: speakers when protocol.txt lacks them)

A spoof is paired with its real by the regex ``^(.+)_(LA_[TD]_\\d{7})$`` on the file stem (greedy
vocoder group, so ``hn-sinc-nsf-hifi_LA_T_...`` is never read as ``hn-sinc-nsf``). Speaker = first
column of ``protocol.txt`` (e.g. ``LA_0079``), else of the ASVspoof CM protocols, else ``unknown``.

Split: voc.v4 has no eval portion, so we keep the ASVspoof 2019 partition the real came from:
``LA_T`` -> ``train``, ``LA_D`` -> ``dev`` (speaker-disjoint, as in ASVspoof). The dataset then has no
``test`` rows; build with ``--split-policy speaker`` (or ``utterance``) to carve one.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .base import Pair, Reject, SourceError, dedupe, pair_id, require_dir

log = logging.getLogger(__name__)

SOURCE = "vocv4"
AUDIO_EXTS = (".wav", ".flac")
SPOOF_RE = re.compile(r"^(.+)_(LA_[TD]_\d{7})$")
SPLIT_OF_PART = {"LA_T": "train", "LA_D": "dev"}
REAL_DIR_OF_PART = {"LA_T": "ASVspoof2019_LA_train", "LA_D": "ASVspoof2019_LA_dev"}
UNKNOWN_SPEAKER = "unknown"


def find_root(root: str | Path | None) -> Path:
    """The voc.v4 folder (the one holding ``wav/``): ``root`` itself or ``root/voc.v4``."""
    if root is None:
        raise SourceError("--root is required for --source vocv4 (the voc.v4 folder holding wav/ and protocol.txt)")
    base = require_dir(root, "voc.v4 root")
    for cand in (base, base / "voc.v4"):
        if (cand / "wav").is_dir():
            return cand
    raise SourceError(f"no wav/ folder under {base}: expected voc.v4/wav/{{vocoder}}_LA_T_NNNNNNN.wav")


def find_real_root(real_root: str | Path | None) -> Path:
    """The ASVspoof 2019 ``LA/`` folder (holding ``ASVspoof2019_LA_train/``), from the user's ``--real-root``."""
    if real_root is None:
        raise SourceError("--real-root is required for --source vocv4: voc.v4 has no real files; pass the folder "
                          "holding LA/ASVspoof2019_LA_{train,dev}/flac from your ASVspoof 2019 copy")
    base = require_dir(real_root, "ASVspoof 2019 LA folder (--real-root)")
    for cand in (base, base / "LA", base / "LA" / "LA"):
        if any((cand / d / "flac").is_dir() for d in REAL_DIR_OF_PART.values()):
            return cand
    raise SourceError(f"no ASVspoof2019_LA_train/flac or ASVspoof2019_LA_dev/flac under {base}: "
                      "pass the folder holding LA/ (or LA/ itself) as --real-root")


def _names(folder: Path) -> set[str]:
    """File names directly in ``folder`` (empty if it does not exist): one listing, no per-file stat."""
    if not folder.is_dir():
        return set()
    with os.scandir(folder) as it:
        return {e.name for e in it}


def _protocol_speakers(files: list[Path]) -> dict[str, str]:
    """utt_id (``LA_T_1138215``) -> speaker from protocol lines ``SPEAKER FILE ...`` (spoof or bona fide rows)."""
    out: dict[str, str] = {}
    for f in files:
        for line in f.read_text(errors="replace").splitlines():
            tok = line.split()
            if len(tok) < 2:
                continue
            m = SPOOF_RE.match(tok[1])
            utt = m.group(2) if m else tok[1]
            out.setdefault(utt, tok[0])
    return out


def read(root: str | Path | None, *, real_root: str | Path | None = None, source: str = SOURCE) -> tuple[list[Pair], list[Reject]]:
    """List every (real, spoof) pair of voc.v4 against the user's ASVspoof 2019 LA reals."""
    base = find_root(root)
    la = find_real_root(real_root)
    real_dirs = {part: la / d / "flac" for part, d in REAL_DIR_OF_PART.items()}
    real_names = {part: _names(d) for part, d in real_dirs.items()}

    protocol = [base / "protocol.txt"] if (base / "protocol.txt").is_file() else []
    cm_dir = la / "ASVspoof2019_LA_cm_protocols"
    cm = sorted(cm_dir.glob("*.txt")) if cm_dir.is_dir() else []
    speakers = _protocol_speakers(protocol)
    for utt, spk in _protocol_speakers(cm).items():
        speakers.setdefault(utt, spk)
    if not protocol:
        log.warning("voc.v4: no protocol.txt in %s; speakers come from %s", base,
                    cm_dir if cm else f"nowhere (they will read {UNKNOWN_SPEAKER!r})")

    pairs: list[Pair] = []
    rejects: list[Reject] = []
    wav_dir = base / "wav"
    for name in sorted(_names(wav_dir)):
        if not name.lower().endswith(AUDIO_EXTS) or name.startswith("."):
            continue
        path = str(wav_dir / name)
        stem = name.rsplit(".", 1)[0]
        m = SPOOF_RE.match(stem)
        if not m:
            rejects.append(Reject(stem, path, "file name is not {vocoder}_LA_T_NNNNNNN or {vocoder}_LA_D_NNNNNNN"))
            continue
        vocoder, utt = m.group(1), m.group(2)
        part = utt[:4]
        pid = pair_id(vocoder, utt)
        real = real_dirs[part] / f"{utt}.flac"
        if real.name not in real_names[part]:
            rejects.append(Reject(pid, path, f"no real twin: expected {real}"))
            continue
        pairs.append(Pair(pid, utt, str(real), path, vocoder, speakers.get(utt, UNKNOWN_SPEAKER), source,
                          SPLIT_OF_PART[part]))
    pairs, dups = dedupe(sorted(pairs, key=lambda p: (p.id, p.spoof_path)))
    return pairs, rejects + dups
