"""Frozen configs of the supervised U-Net and its named presets (``small`` for a CPU, ``large`` for a GPU)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from training.segdiff.config import _build, replace

__all__ = ["ModelConfig", "TrainConfig", "UNetConfig", "PRESETS", "preset", "replace"]


@dataclass(frozen=True)
class ModelConfig:
    """Encoder/decoder widths (one per level), GroupNorm groups, frequency bins."""

    widths: tuple[int, ...] = (16, 32, 64)
    groups: int = 8
    n_freq: int = 257

    def __post_init__(self):
        if len(self.widths) < 1 or any(w < 1 or w % self.groups for w in self.widths):
            raise ValueError(f"widths {self.widths} must be positive multiples of groups={self.groups}")

    @property
    def down_factor(self) -> int:
        """Both spatial axes are padded internally to a multiple of this."""
        return 2 ** (len(self.widths) - 1)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, crops, loss, validation and checkpoint cadence."""

    crop_frames: int = 128
    batch_size: int = 8
    steps: int = 800  # sized to a CPU training budget (docs/performance.md)
    lr: float = 1e-3
    pos_weight: float = 4.0  # BCE weight of the ~5% foreground bins
    dice_weight: float = 1.0  # loss = BCE + dice_weight * soft Dice
    seed: int = 0
    val_every: int = 200
    val_utterances: int = 32
    ckpt_every: int = 100


@dataclass(frozen=True)
class UNetConfig:
    """Everything a checkpoint needs to rebuild the model and its input normalisation."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    max_frames: int = 2048  # longer utterances are explained as stitched crops of this many frames
    normalisation: str = "dataset"  # spoof log-magnitude standardised by the training split's mean/std

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        return cls(model=_build(ModelConfig, d.get("model", {})), train=_build(TrainConfig, d.get("train", {})),
                   max_frames=d.get("max_frames", 2048), normalisation=d.get("normalisation", "dataset"))


PRESETS = ("small", "large")


def preset(name: str) -> UNetConfig:
    """The named config: ``small`` (3 levels 16/32/64, the CPU default) or ``large`` (4 levels 32..256, a GPU)."""
    if name == "small":
        return UNetConfig()
    if name == "large":
        return UNetConfig(model=ModelConfig(widths=(32, 64, 128, 256)), train=TrainConfig(batch_size=16, steps=20_000, val_every=1000))
    raise ValueError(f"unknown preset {name!r}: choose from {', '.join(PRESETS)}")
