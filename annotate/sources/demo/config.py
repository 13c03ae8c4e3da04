"""The demo corpus's identity and parameters: version, generator revision, vocoders, hop, and :class:`DemoConfig`
(stored in the ``.complete`` marker, so a change regenerates a cached corpus)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

VERSION = "demo-v1"
REVISION = 4  # bump when the generator's output changes, so ensure() rebuilds cached corpora
MARKER = ".complete"
VOCODERS = ("griffinlim", "world", "lpc", "mp3", "opus")  # codecs at ~24 / ~32 kbit/s (libsndfile level 0.9)
CODEC_LEVEL = 0.9
HOP = 256  # the vocoders' frame hop: every spoof length is a multiple of it
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
# a vocoder's own delay is measured per utterance (intrinsic_delay) and added to the framing shift in truth.json


class DemoError(Exception):
    """A problem with the demo corpus folder (one line for the user)."""


@dataclass(frozen=True)
class DemoConfig:
    """Parameters of one demo corpus; stored in the ``.complete`` marker so a change regenerates it."""

    n_speakers: int = 4
    utts_per_speaker: int = 8
    seed: int = 0
    sample_rate: int = 24000
    vocoders: tuple[str, ...] = VOCODERS

    def __post_init__(self) -> None:
        if self.n_speakers < 1 or self.utts_per_speaker < 1:
            raise DemoError(f"demo corpus needs >= 1 speaker and >= 1 utterance each (got {self.n_speakers}, {self.utts_per_speaker})")
        if self.sample_rate < 16000:
            raise DemoError(f"demo sample_rate {self.sample_rate} too low: use >= 16000 (default 24000)")
        bad = [v for v in self.vocoders if v not in VOCODERS]
        if bad or not self.vocoders:
            raise DemoError(f"unknown demo vocoder(s) {bad or '(none)'}: choose from {', '.join(VOCODERS)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vocoders"] = list(self.vocoders)
        d["version"] = VERSION
        d["revision"] = REVISION
        return d
