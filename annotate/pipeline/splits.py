"""Split assignment: official lists when the corpus has them, otherwise a seeded hash split.

All spoofs of one real utterance always share a split (the unit is ``utt_id``, or ``speaker`` for the
speaker-disjoint policy), so no real utterance leaks across splits.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

from ..sources.base import Pair

POLICIES = ("official", "utterance", "speaker")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def _unit_draw(key: str, seed: int) -> float:
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _by_hash(key: str, seed: int, fractions: tuple[float, float, float]) -> str:
    u = _unit_draw(key, seed)
    if u < fractions[0]:
        return "train"
    return "dev" if u < fractions[0] + fractions[1] else "test"


def assign_splits(pairs: list[Pair], policy: str = "official", seed: int = 0,
                  fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> list[Pair]:
    """Return pairs with ``split`` set.

    ``official``: keep the corpus's split; utterances it does not list get a hash split by ``utt_id``.
    ``utterance``: hash split by ``utt_id``. ``speaker``: hash split by speaker (speaker-disjoint).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown split policy {policy!r}: choose one of {', '.join(POLICIES)}")
    # an utterance's official split is taken from any of its spoofs, so all spoofs agree
    official = {p.utt_id: p.split for p in pairs if p.split}
    out = []
    for p in pairs:
        if policy == "speaker":
            split = _by_hash("spk:" + p.speaker, seed, fractions)
        elif policy == "official" and p.utt_id in official:
            split = official[p.utt_id]
        else:
            split = _by_hash("utt:" + p.utt_id, seed, fractions)
        out.append(replace(p, split=split))
    return out


def assign_groups(groups: list[str], seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
                  pinned: dict[str, str] | None = None, order: list[str] | None = None) -> dict[str, str]:
    """group (e.g. speaker) -> split, in proportion to ``fractions`` by count: groups are ordered (by a seeded
    hash, or as ``order`` lists them) and cut in that order, test first, then dev, the rest train; with 3 or
    more groups dev and test each get at least one. ``pinned`` groups keep the split given there and count
    towards it."""
    pinned = dict(pinned or {})
    if order is None:
        free = sorted((g for g in set(groups) if g not in pinned), key=lambda g: _unit_draw("grp:" + g, seed))
    else:
        wanted = set(groups) - set(pinned)
        free = [g for g in dict.fromkeys(order) if g in wanted]
        if len(free) != len(wanted):
            raise ValueError(f"order lists {len(free)} of the {len(wanted)} groups to assign")
    n = len(free) + len(pinned)
    want = {"dev": round(fractions[1] * n), "test": round(fractions[2] * n)}
    if n >= 3:
        want = {k: max(1, v) for k, v in want.items()}
    out = dict(pinned)
    for split in ("test", "dev"):
        k = max(0, want[split] - sum(1 for s in pinned.values() if s == split))
        for g in free[:k]:
            out[g] = split
        free = free[k:]
    out.update({g: "train" for g in free})
    return out
