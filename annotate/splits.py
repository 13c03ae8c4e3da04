"""Split assignment: official lists when the corpus has them, otherwise a seeded hash split.

All spoofs of one real utterance always share a split (the unit is ``utt_id``, or ``speaker`` for the
speaker-disjoint policy), so no real utterance leaks across splits.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

from .sources.base import Pair

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
