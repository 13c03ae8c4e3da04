"""Frozen configs for SegDiff and the named presets (``paper`` for GPUs, ``small`` for a CPU)."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields

CONDITIONS = ("spec", "detector")
# explain's sampling defaults: the cheapest setting within 1 IoU point of the best on held-out rows
# (perf/explainers.py on the development corpus's dev speaker; docs/segdiff.md). 0 DDIM steps = full DDPM.
EXPLAIN_SAMPLES = 1
EXPLAIN_DDIM_STEPS = 1


@dataclass(frozen=True)
class ModelConfig:
    """UNet + conditioning encoder sizes. ``condition`` is ``spec`` (SpecSegDiff) or ``detector`` (ADDSegDiff)."""

    condition: str = "spec"
    width: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (2, 3)
    groups: int = 32
    heads: int = 4
    mid_attention: bool = True  # self-attention in the bottleneck (costly on a CPU at long crops)
    dropout: float = 0.0
    rrdb_blocks: int = 12
    rrdb_width: int = 64
    rrdb_growth: int = 32
    n_freq: int = 257
    # ADDSegDiff only: which detector layers, their width, and the 2-layer MLP's output width.
    detector_layers: tuple[int, ...] = (0, 4, 9, 14, 19, 23)
    detector_dim: int = 1024
    layer_proj: int = 320
    detector_stride: int = 320  # samples between the detector's frames (wav2vec2 conv front end)
    detector_field: int = 400  # samples one detector frame sees
    hop_length: int = 128  # STFT hop of the dataset grid the layers are placed on

    def __post_init__(self):
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if any(not 0 <= a < len(self.channel_mult) for a in self.attention_levels):
            raise ValueError(f"attention_levels {self.attention_levels} outside 0..{len(self.channel_mult) - 1}")

    @property
    def down_factor(self) -> int:
        """Both spatial axes are padded internally to a multiple of this."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def cond_channels(self) -> int:
        return 1 if self.condition == "spec" else len(self.detector_layers)


PARAMETERISATIONS = ("eps", "x0", "logit")
NORMALISATIONS = ("per-utterance", "dataset")


@dataclass(frozen=True)
class DiffusionConfig:
    """DDPM with T steps and linear betas scaled as in SegDiff: 1e-4*(1000/T) ... 0.02*(1000/T).

    ``parameterisation``: what the network predicts: the noise (``eps``, SegDiff, MSE), the clean mask (``x0``,
    MSE) or the clean mask's foreground logit (``logit``: x0 = tanh(logit / 2), trained with the U-Net's
    BCE + soft Dice, foreground weighted by ``TrainConfig.fg_weight``)."""

    timesteps: int = 100
    parameterisation: str = "eps"

    def __post_init__(self):
        if self.parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"parameterisation must be one of {PARAMETERISATIONS}, got {self.parameterisation!r}")

    @property
    def beta_start(self) -> float:
        return 1e-4 * 1000 / self.timesteps

    @property
    def beta_end(self) -> float:
        return 0.02 * 1000 / self.timesteps


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, crops, EMA, validation and checkpoint cadence."""

    crop_frames: int = 128
    batch_size: int = 24
    steps: int = 100_000
    lr: float = 1e-4
    weight_decay: float = 1e-4
    fg_weight: float = 1.0  # loss weight of foreground mask bins (~5% of a mask) relative to background
    shuffle_condition: bool = False  # diagnostic: pair each crop's mask with another crop's condition
    t_max_fraction: float = 0.0  # share of each batch trained at t = T-1, where only the condition can predict the mask
    ema_decay: float = 0.9999
    seed: int = 0
    val_every: int = 5000
    val_utterances: int = 16
    val_samples: int = 8
    val_ddim_steps: int = 25
    val_max_frames: int = 0  # validate on each dev utterance's first N frames (0 = whole utterance)
    ckpt_every: int = 1000
    max_minutes: float = 0.0  # 0 = no wall-clock limit; otherwise stop (and save) after this many minutes


@dataclass(frozen=True)
class SegDiffConfig:
    """Everything a checkpoint needs to rebuild the model and its sampler."""

    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    normalisation: str = "per-utterance"  # or "dataset": by the training split's mean/std (see data.py)

    def __post_init__(self):
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SegDiffConfig":
        return cls(
            model=_build(ModelConfig, d.get("model", {})),
            diffusion=_build(DiffusionConfig, d.get("diffusion", {})),
            train=_build(TrainConfig, d.get("train", {})),
            normalisation=d.get("normalisation", "per-utterance"),
        )


def _build(cls, d: dict):
    """A dataclass from a JSON dict: lists back to tuples, unknown keys rejected with a clear message."""
    names = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)} (checkpoint from another version?)")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def preset(name: str, condition: str = "spec") -> SegDiffConfig:
    """The named config: ``paper`` (SegDiff paper sizes) or ``small`` (trains on a CPU in minutes)."""
    if name == "paper":
        if condition == "spec":
            model = ModelConfig(condition="spec", rrdb_blocks=12)
            train = TrainConfig(batch_size=24)
        else:
            model = ModelConfig(condition="detector", rrdb_blocks=1)
            train = TrainConfig(batch_size=48)
        return SegDiffConfig(model=model, train=train)
    if name == "small":
        # CPU-sized, chosen from the diagnosis on real speech (docs/segdiff.md): a narrow 4-level UNet with
        # attention only in the 1/8-resolution bottleneck, a 3-conv condition encoder (no RRDB block), 128-frame
        # crops, the clean mask's logit as the target (BCE + Dice, foreground weight 4), half of each batch at
        # t = T-1, inputs standardised by the training split's mean/std.
        model = ModelConfig(
            condition=condition,
            width=16,
            channel_mult=(1, 2, 2, 4),
            num_res_blocks=1,
            attention_levels=(),
            groups=8,
            heads=2,
            rrdb_blocks=0,
            rrdb_width=16,
            rrdb_growth=8,
            detector_layers=(0, 1),
            detector_dim=128,
            layer_proj=64,
        )
        train = TrainConfig(
            crop_frames=128,
            batch_size=8,
            steps=500,  # ~30 CPU-minutes; dev IoU still rises ~1.4 points per 100 steps there (docs/segdiff.md)
            lr=1e-3,
            fg_weight=4.0,
            t_max_fraction=0.5,
            ema_decay=0.995,
            val_every=100,
            val_utterances=16,
            val_samples=1,
            val_ddim_steps=1,
            val_max_frames=256,
            ckpt_every=100,
        )
        return SegDiffConfig(model=model, diffusion=DiffusionConfig(parameterisation="logit"), train=train,
                             normalisation="dataset")
    raise ValueError(f"unknown preset {name!r}: choose 'paper' or 'small'")


def replace(cfg, **changes):
    """``dataclasses.replace`` that ignores ``None`` values (unset CLI options)."""
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
