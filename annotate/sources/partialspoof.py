"""PartialSpoof reader (Zhang et al., IEEE/ACM TASLP 2023; zenodo.org/record/5766198): ASVspoof 2019 LA utterances
with spoofed segments spliced in, labelled per segment. No utterance has a real twin, so every row is a
:class:`~annotate.sources.base.LabelledSpoof`: frame labels, no T-F mask.

Layout, as the official download script (github.com/nii-yamagishilab/PartialSpoof, ``01_download_database.sh``)
unpacks it; ROOT = ``PartialSpoof/database`` (``PartialSpoof/`` itself is accepted too)::

    ROOT/{train,dev,eval}/con_wav/*.wav            CON_T_0000000.wav (partially spoofed), LA_T_1000137.wav (bona fide)
    ROOT/protocols/PartialSpoof_LA_cm_protocols/PartialSpoof.LA.cm.{split}.trl.txt
                                                   lines ``LA_0079 CON_T_0000000 - - spoof``: speaker, utterance, -, attack, key
    ROOT/segment_labels/{split}_seglab_{res}.npy   res = 0.01 (v1.2), 0.02, 0.04, 0.08, 0.16, 0.32, 0.64 s

A segment-label file is ``np.save`` of a dict ``{utterance: array of '0'/'1' strings}``, one value per ``res``
seconds from the start. Convention (official repository, ``03multireso/model.py``: "'0' in labvec -> spoof",
coarser resolutions derived with ``min``; ``metric/RangeEER.py``: bona fide 1.0, spoof 0.0): ``'1'`` = bona fide,
``'0'`` = spoof; a segment is spoofed when any part of it is. The files are pickles: they are read with
:func:`annotate.sources.npydict.read_npy_dict`, which never unpickles. The finest resolution present gives each
row's labels (``'1'`` = spoofed, vocmask's polarity); every coarser one is checked against it (a coarse segment
is spoof iff one of its fine segments is); the CM protocol's key is checked against the labels (a bona fide
utterance has no spoofed segment, a spoof has one), which also catches an inverted file.

Rows: id ``{vocoder}__{utterance}``, vocoder = the protocol's attack column (``partialspoof`` when it is ``-``)
for spoofs and ``bonafide`` for bona fide utterances; speaker from the protocol; split train/dev/test (eval).
An utterance whose audio, protocol line or labels are missing, or whose labels disagree, is a reject.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np

from .base import LabelledSpoof, Pair, Reject, SourceError, pair_id, require_dir, scan_files
from .npydict import UnsafePickle, read_npy_dict

log = logging.getLogger(__name__)

SOURCE = "partialspoof"
SPLITS = {"train": "train", "dev": "dev", "eval": "test"}  # corpus split -> vocmask split
PROTOCOL_DIR = Path("protocols") / "PartialSpoof_LA_cm_protocols"
LABEL_DIR = "segment_labels"
LABEL_RE = re.compile(r"^(?P<split>train|dev|eval)_seglab_(?P<res>\d+(?:\.\d+)?)\.npy$")
BONAFIDE, SPOOF = "bonafide", "spoof"
DEFAULT_ATTACK = "partialspoof"
CORPUS_BONAFIDE = "1"  # the corpus's value for a bona fide segment ('0' = spoof)


def find_root(root: str | Path | None) -> Path:
    """The ``database`` folder: ``root`` itself or ``root/database``."""
    if root is None:
        raise SourceError("--root is required for --source partialspoof (the PartialSpoof/database folder holding "
                          "train/, dev/, eval/, protocols/, segment_labels/)")
    base = require_dir(root, "PartialSpoof root")
    for cand in (base, base / "database"):
        if any((cand / s / "con_wav").is_dir() for s in SPLITS):
            return cand
    raise SourceError(f"no PartialSpoof split folders under {base}: expected train/con_wav/, dev/con_wav/, "
                      "eval/con_wav/ (pass PartialSpoof/database as --root)")


def protocol_path(base: Path, split: str) -> Path:
    return base / PROTOCOL_DIR / f"PartialSpoof.LA.cm.{split}.trl.txt"


def label_files(base: Path, split: str) -> list[tuple[float, Path]]:
    """``(resolution in seconds, path)`` of the split's segment-label files, finest first."""
    folder = base / LABEL_DIR
    if not folder.is_dir():
        return []
    out = [(float(m["res"]), folder / f.name) for f in folder.iterdir()
           if (m := LABEL_RE.match(f.name)) and m["split"] == split]
    return sorted(out)


def read_protocol(path: Path) -> tuple[dict[str, tuple[str, str, str]], list[Reject]]:
    """utterance -> (speaker, attack, key) from a CM protocol; malformed lines are rejects."""
    out: dict[str, tuple[str, str, str]] = {}
    rejects: list[Reject] = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        tok = line.split()
        if not tok:
            continue
        if len(tok) < 5 or tok[4].lower() not in (BONAFIDE, SPOOF):
            rejects.append(Reject(f"{path.name}:{n}", str(path),
                                  f"{path.name} line {n}: expected 'SPEAKER UTTERANCE - ATTACK bonafide|spoof'"))
            continue
        out[tok[1]] = (tok[0], tok[3], tok[4].lower())
    return out, rejects


def spoof_bits(values: np.ndarray) -> np.ndarray:
    """A corpus label array as bool per segment, True = spoofed ('0' in the corpus); raises ValueError otherwise."""
    v = np.asarray(values).reshape(-1)
    if v.dtype.kind == "S":
        v = v.astype("U")
    if v.dtype.kind == "U":
        if not np.isin(v, ["0", "1"]).all():
            bad = str(v[~np.isin(v, ["0", "1"])][0])
            raise ValueError(f"label value {bad!r} is not '0' or '1'")
        return v != CORPUS_BONAFIDE
    if v.dtype.kind in "biuf":
        if not np.isin(v, [0, 1]).all():
            raise ValueError(f"label value {v[~np.isin(v, [0, 1])][0].item()!r} is not 0 or 1")
        return v == 0
    raise ValueError(f"labels of dtype {v.dtype}")


def coarse_disagreement(fine: np.ndarray, fine_res: float, coarse: np.ndarray, coarse_res: float) -> str | None:
    """Why ``coarse`` does not follow from ``fine`` (a coarse segment is spoofed iff one of its fine segments is),
    or None. The coarse count may differ by one from ``len(fine) / ratio`` (floor, round and ceil conventions)."""
    ratio = coarse_res / fine_res
    k = int(round(ratio))
    if k < 1 or abs(ratio - k) > 1e-6:
        return f"{coarse_res} s is not a multiple of {fine_res} s"
    expected = len(fine) / k
    if abs(len(coarse) - expected) > 1:
        return f"{len(coarse)} segments of {coarse_res} s for {len(fine)} of {fine_res} s"
    n = min(len(coarse), math.ceil(len(fine) / k))
    if n == 0:
        return None
    agg = np.add.reduceat(fine.astype(np.int64), np.arange(n) * k) > 0
    bad = np.flatnonzero(agg != coarse[:n])
    if bad.size:
        j = int(bad[0])
        return (f"its {coarse_res} s segment {j} is {'spoof' if coarse[j] else 'bona fide'} but its {fine_res} s "
                f"segments {j * k}..{min(len(fine), (j + 1) * k) - 1} say {'spoof' if agg[j] else 'bona fide'}")
    return None


def _load_labels(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(utterance -> spoof bits, utterance -> why unreadable) of one label file; a file that is not a plain dict of
    arrays is a :class:`SourceError` (the whole corpus download is suspect)."""
    try:
        raw = read_npy_dict(path)
    except UnsafePickle as e:
        raise SourceError(str(e)) from None
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from None
    bits, bad = {}, {}
    for utt, v in raw.items():
        try:
            bits[utt] = spoof_bits(v)
        except ValueError as e:
            bad[utt] = f"{path.name}: {e}"
    return bits, bad


def check_polarity(bits: dict[str, np.ndarray], protocol: dict[str, tuple[str, str, str]], path: Path) -> None:
    """Refuse a label file whose bona fide utterances (per the protocol) are mostly all-spoof: inverted labels."""
    bona = [bits[u] for u, (_, _, key) in protocol.items() if key == BONAFIDE and u in bits]
    if bona and sum(bool(b.all()) for b in bona) > len(bona) / 2:
        raise SourceError(f"{path}: the protocol's bona fide utterances are labelled all spoof here: the file looks "
                          f"inverted (PartialSpoof's convention is '1' = bona fide, '0' = spoof); download it again")


def read_split(base: Path, split: str) -> tuple[list[Pair], list[Reject]]:
    """The rows of one corpus split (``split`` as the corpus names it: train, dev, eval)."""
    proto_file = protocol_path(base, split)
    if not proto_file.is_file():
        raise SourceError(f"CM protocol missing: {proto_file} (download database_protocols.tar.gz next to {split}/)")
    files = label_files(base, split)
    if not files:
        raise SourceError(f"no segment labels for {split}: expected {base / LABEL_DIR}/{split}_seglab_0.01.npy (or 0.02 "
                          "... 0.64; download database_segment_labels_v1.2.tar.gz)")
    protocol, rejects = read_protocol(proto_file)
    (fine_res, fine_path), coarser = files[0], files[1:]
    fine, bad = _load_labels(fine_path)
    check_polarity(fine, protocol, fine_path)
    for res, path in coarser:  # one coarse file in memory at a time
        coarse, bad_c = _load_labels(path)
        check_polarity(coarse, protocol, path)
        for utt, bits in fine.items():
            if utt in bad:
                continue
            if utt in bad_c:
                bad[utt] = bad_c[utt]
            elif utt not in coarse:
                bad[utt] = f"missing from {path.name}"
            elif (why := coarse_disagreement(bits, fine_res, coarse[utt], res)) is not None:
                bad[utt] = f"segment labels disagree: {path.name} vs {fine_path.name}: {why}"
    wav_dir = base / split / "con_wav"
    audio, link_rejects = scan_files(wav_dir, (".wav", ".flac"), id_of=lambda name: name.rsplit(".", 1)[0])
    rejects += link_rejects
    on_disk = {e.name.rsplit(".", 1)[0]: e.path for e in audio}
    pairs: list[Pair] = []
    vsplit = SPLITS[split]
    for utt in sorted(set(protocol) | set(on_disk)):
        if utt not in protocol:
            rejects.append(Reject(utt, on_disk[utt], f"not in the CM protocol {proto_file.name}"))
            continue
        speaker, attack, key = protocol[utt]
        vocoder = BONAFIDE if key == BONAFIDE else (attack if attack not in ("-", "") else DEFAULT_ATTACK)
        pid = pair_id(vocoder, utt)
        path = on_disk.get(utt)
        if path is None:
            rejects.append(Reject(pid, str(wav_dir / f"{utt}.wav"), f"audio missing: listed in {proto_file.name}"))
        elif utt in bad:
            rejects.append(Reject(pid, path, bad[utt]))
        elif utt not in fine:
            rejects.append(Reject(pid, path, f"no segment labels in {fine_path.name}"))
        elif (key == SPOOF) != bool(fine[utt].any()):
            n = int(fine[utt].sum())
            rejects.append(Reject(pid, path, f"protocol key {key} but {n} of {fine[utt].size} segments of "
                                             f"{fine_path.name} are spoofed"))
        else:
            labels = (fine[utt].astype(np.uint8) + ord("0")).tobytes().decode("ascii")
            pairs.append(LabelledSpoof(pid, utt, "", path, vocoder, speaker, SOURCE, vsplit,
                                       labels=labels, segment_seconds=fine_res))
    return pairs, rejects


def read(root: str | Path | None, *, real_root: str | Path | None = None) -> tuple[list[Pair], list[Reject]]:
    """Every labelled utterance of a PartialSpoof download (``real_root`` is unused: there are no real twins)."""
    base = find_root(root)
    pairs: list[Pair] = []
    rejects: list[Reject] = []
    for split in SPLITS:
        if not (base / split / "con_wav").is_dir():
            log.warning("partialspoof: no %s/con_wav under %s; skipping the %s split", split, base, split)
            continue
        p, r = read_split(base, split)
        pairs += p
        rejects += r
    return sorted(pairs, key=lambda p: p.id), rejects
