"""Codecfake reader (Xie et al., 2024, arXiv 2405.04880): VCTK and AISHELL-3 re-synthesised by neural codecs.

Layout, as the official repository (github.com/xieyuankun/Codecfake) asks users to arrange the
zenodo zips (16 kHz WAV)::

    ROOT = Codecfake/
        label/{train,dev,C1..C7,A1..A3}.txt    lines ``F01_SSB13650058.wav fake 1`` / ``SSB13650058.wav real 0``
        train/*.wav                            reals and their fakes side by side
        dev/*.wav                              (``val/`` or ``valid/`` also accepted)
        test/{C1..C7,A1..A3}/*.wav             (test folders directly under ROOT, e.g. ``C7/``, also accepted)

A fake is ``F{kk}_{orig}.wav`` (codec ``kk`` = 01..07; test condition ``Ck`` holds codec ``F0k``) and its
real twin is ``{orig}.wav`` in the same folder. Vocoder = ``F01``..``F07``; utt_id = ``{orig}``.
Speaker from the id: VCTK ``p225_001`` -> ``p225``, AISHELL-3 ``SSB13650058`` -> ``SSB1365``, else
``unknown``. Split: ``train``/``dev`` folders keep their name, every test folder -> ``test``.

When ``label/{folder}.txt`` exists its ``fake`` rows are the spoofs (a listed fake that is missing on
disk is a reject); otherwise every ``F{kk}_*`` file in the folder is. Fakes without the ``F{kk}_``
prefix (the ALM test sets A1-A3: audio-LM outputs, not re-syntheses) have no real twin: each such
folder is skipped with one logged warning giving the count, not with a reject per file.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .base import Pair, Reject, SourceError, dedupe, pair_id, require_dir, scan_files

log = logging.getLogger(__name__)

SOURCE = "codecfake"
FAKE_RE = re.compile(r"^(F\d{2})_(.+)$")
TEST_DIR_RE = re.compile(r"^[CA]\d+$")
DEV_NAMES = ("dev", "val", "valid", "validation")
FAKE_LABELS = {"fake", "spoof"}
SPEAKER_RES = (re.compile(r"^([ps]\d+)_\d+$"), re.compile(r"^(SSB\d{4})\d{4}$"))
UNKNOWN_SPEAKER = "unknown"


def speaker_of(utt: str) -> str:
    """Speaker of a VCTK (``p225_001``) or AISHELL-3 (``SSB13650058``) utterance id."""
    for rx in SPEAKER_RES:
        m = rx.match(utt)
        if m:
            return m.group(1)
    return UNKNOWN_SPEAKER


def find_root(root: str | Path | None) -> Path:
    """The Codecfake folder (holding ``train/``, ``dev/``, ``test/`` or ``C*/``): ``root`` or ``root/Codecfake``."""
    if root is None:
        raise SourceError("--root is required for --source codecfake (the Codecfake folder holding label/, train/, dev/, test/)")
    base = require_dir(root, "Codecfake root")
    for cand in (base, base / "Codecfake", base / "Codecfake16k"):
        if cand.is_dir() and split_folders(cand):
            return cand
    raise SourceError(f"no Codecfake split folders under {base}: expected train/, dev/, test/C1/ ... with "
                      "F01_{orig}.wav fakes next to {orig}.wav reals")


def split_folders(base: Path) -> list[tuple[Path, str]]:
    """(folder, split) for every audio folder of the corpus, in a fixed order."""
    out: list[tuple[Path, str]] = []
    if (base / "train").is_dir():
        out.append((base / "train", "train"))
    out += [(base / n, "dev") for n in DEV_NAMES if (base / n).is_dir()]
    test = base / "test"
    if test.is_dir():
        out += [(d, "test") for d in sorted(test.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    out += [(d, "test") for d in sorted(base.iterdir()) if d.is_dir() and TEST_DIR_RE.match(d.name)]
    return out


def _label_file(base: Path, folder: Path) -> Path | None:
    names = [folder.name] + (list(DEV_NAMES) if folder.name in DEV_NAMES else [])
    for n in names:
        f = base / "label" / f"{n}.txt"
        if f.is_file():
            return f
    return None


def _labelled_fakes(label: Path) -> list[str]:
    """File names labelled fake in a ``label/*.txt`` (``NAME LABEL METHOD`` per line)."""
    out = []
    for line in label.read_text(errors="replace").splitlines():
        tok = line.split()
        if len(tok) >= 2 and tok[1].lower() in FAKE_LABELS:
            name = os.path.basename(tok[0])
            out.append(name if "." in name else name + ".wav")
    return out


def read(root: str | Path | None, *, real_root: str | Path | None = None, source: str = SOURCE) -> tuple[list[Pair], list[Reject]]:
    """List every (real, spoof) pair of a Codecfake download (``real_root`` is unused: reals ship with it)."""
    base = find_root(root)
    pairs: list[Pair] = []
    rejects: list[Reject] = []
    for folder, split in split_folders(base):
        files, bad = scan_files(folder, (".wav", ".flac"))
        rejects += bad  # link loops, dangling links
        on_disk = {e.name for e in files}
        label = _label_file(base, folder)
        fakes = sorted(set(_labelled_fakes(label))) if label is not None else []
        if label is not None and not fakes:
            log.warning("codecfake: %s lists no fakes; pairing the F{kk}_* files found in %s instead", label, folder)
        if not fakes:
            fakes = sorted(n for n in on_disk if n.lower().endswith(".wav") and FAKE_RE.match(n.rsplit(".", 1)[0]))
        unpairable = 0
        for name in fakes:
            stem, ext = name.rsplit(".", 1) if "." in name else (name, "wav")
            m = FAKE_RE.match(stem)
            if not m:
                unpairable += 1
                continue
            vocoder, utt = m.group(1), m.group(2)
            pid = pair_id(vocoder, utt)
            spoof = folder / name
            if name not in on_disk:
                rejects.append(Reject(pid, str(spoof), f"spoof file missing: listed in {label} but not on disk"))
                continue
            real = folder / f"{utt}.{ext}"
            if real.name not in on_disk:
                rejects.append(Reject(pid, str(spoof), f"no real twin: expected {real}"))
                continue
            pairs.append(Pair(pid, utt, str(real), str(spoof), vocoder, speaker_of(utt), source, split))
        if unpairable:
            log.warning("codecfake: skipping %d fakes in %s without the F{kk}_{orig} name (audio-LM outputs, no real twin)",
                        unpairable, folder)
    pairs, dups = dedupe(sorted(pairs, key=lambda p: (p.id, p.spoof_path)))
    return pairs, rejects + dups
