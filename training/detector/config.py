"""Frozen configs of the Wav2Vec2-AASIST detector: presets ``small`` (CPU) and ``xlsr300m`` (paper).

Label convention (everywhere in this package, stored in every checkpoint): logits ``(B, 2)``,
index 0 = bona fide, index 1 = spoof.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

LABELS = ("bonafide", "spoof")
CONVENTION = "logits (B, 2): index 0 = bona fide, index 1 = spoof"

# XLS-R / wav2vec2 large conv feature extractor: 7 layers, total stride 320, receptive field 400.
XLSR_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


@dataclass(frozen=True)
class FrontendConfig:
    """wav2vec2 front end built with ``torchaudio.models.wav2vec2_model`` (``arch='xlsr300m'`` uses the
    torchaudio XLS-R 300M builder). ``weights``: a local file/folder to import at build time (never downloaded)."""

    arch: str = "custom"  # "custom" | "xlsr300m"
    conv_layers: tuple[tuple[int, int, int], ...] = XLSR_CONV
    extractor_mode: str = "layer_norm"
    conv_bias: bool = True
    embed_dim: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    ff_dim: int = 4096
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_first: bool = True
    dropout: float = 0.0
    weights: str | None = None
    normalize_input: bool = False  # per-utterance zero-mean/unit-variance of the waveform before the front end
    pre_emphasis: float = 0.0  # y[n] = x[n] - a x[n-1] before the normalisation (0 = off): lifts the 4-8 kHz band
    # "conv": wav2vec2's conv feature extractor on the waveform (``conv_layers``); "logspec": a log-magnitude STFT
    # (``spec_n_fft``, ``spec_hop``, no centring) and a 2-D conv stem (``spec_channels``; each block halves the
    # frequency axis, the first also halves time) in its place, flattened to (frames, channels x bins)
    extractor: str = "conv"
    spec_n_fft: int = 512
    spec_hop: int = 160
    spec_channels: tuple[int, ...] = (16, 32, 32, 32)

    @property
    def stride(self) -> int:
        """Samples per output frame of the feature extractor."""
        return self.geometry[0]

    @property
    def geometry(self) -> tuple[int, int]:
        """(stride, receptive field) in samples: frame j of the extractor reads samples [j stride, j stride + field)
        (for "logspec": the STFT frames it pools, not counting the stem's 3x3 context, which is symmetric)."""
        if self.extractor == "logspec":
            return 2 * self.spec_hop, self.spec_n_fft + self.spec_hop
        stride, field = 1, 1
        for _, kernel, step in self.conv_layers:
            field += (kernel - 1) * stride
            stride *= step
        return stride, field

    @property
    def feature_dim(self) -> int:
        """Width of the extractor's output frames (the encoder's feature projection input)."""
        if self.extractor == "logspec":
            bins = self.spec_n_fft // 2 + 1
            for _ in self.spec_channels:
                bins //= 2
            return self.spec_channels[-1] * bins
        return self.conv_layers[-1][0]


@dataclass(frozen=True)
class BackendConfig:
    """AASIST back end (Jung et al. 2022, as adapted by Tak et al. 2022); defaults are the paper's sizes."""

    proj_dim: int = 128  # Linear D -> proj_dim; this axis becomes the "spectral" axis of the 2-D map
    pool: int = 3  # max-pool (pool x pool) on the projected map
    res_channels: tuple[int, ...] = (1, 32, 32, 64, 64, 64, 64)  # 6 residual blocks, no pooling
    gat_dim: int = 64  # spectral / temporal graph attention width
    gat_temp: float = 2.0
    gat_pool: float = 0.5  # graph pooling ratio after the first GAT layers
    hs_dims: tuple[int, int] = (32, 32)  # HS-GAL widths (64 -> 32 -> 32)
    hs_temp: float = 100.0
    hs_pool: float = 0.5
    dropout: float = 0.5  # before the output layer
    dropout_way: float = 0.2  # on each branch's outputs
    gat_input_dropout: float = 0.2
    graph_pool_dropout: float = 0.3

    @property
    def n_spectral(self) -> int:
        """Spectral nodes (42 for the paper: 128 // 3)."""
        return self.proj_dim // self.pool

    @property
    def embed_dim(self) -> int:
        """Size of the penultimate readout [max|T|, mean T, max|S|, mean S, master] (160 in the paper)."""
        return 5 * self.hs_dims[1]


@dataclass(frozen=True)
class DetectorConfig:
    """Everything needed to rebuild the model; saved as JSON next to the weights."""

    name: str
    frontend: FrontendConfig
    backend: BackendConfig
    crop: int = 64600  # training/evaluation crop in samples (tiled if shorter)
    sample_rate: int = 16000
    segdiff_layers: tuple[int, ...] = (0, 4, 9, 14, 19, 23)  # transformer layers exposed to ADDSegDiff
    convention: str = CONVENTION

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "DetectorConfig":
        """Inverse of :meth:`to_dict` (JSON lists become tuples again)."""
        fe = dict(d["frontend"])
        fe["conv_layers"] = tuple(tuple(int(v) for v in c) for c in fe["conv_layers"])
        if "spec_channels" in fe:
            fe["spec_channels"] = tuple(int(v) for v in fe["spec_channels"])
        be = dict(d["backend"])
        be["res_channels"] = tuple(be["res_channels"])
        be["hs_dims"] = tuple(be["hs_dims"])
        rest = {k: v for k, v in d.items() if k not in ("frontend", "backend")}
        rest["segdiff_layers"] = tuple(rest.get("segdiff_layers", ()))
        return DetectorConfig(frontend=FrontendConfig(**fe), backend=BackendConfig(**be), **rest)

    def shallower(self) -> "DetectorConfig":
        """The neural-collapse student: half the transformer layers and the first 4 residual blocks."""
        n = max(1, self.frontend.num_layers // 2)
        fe = replace(self.frontend, num_layers=n)
        be = replace(self.backend, res_channels=self.backend.res_channels[:5])
        layers = tuple(i for i in self.segdiff_layers if i < n) or (n - 1,)
        return replace(self, name=self.name + "-nc", frontend=fe, backend=be, segdiff_layers=layers)


def xlsr300m(weights: str | None = None) -> DetectorConfig:
    """The paper's configuration (Tak et al. 2022): XLS-R 300M (24 layers, 1024-d) + full-size AASIST."""
    return DetectorConfig(name="xlsr300m", frontend=FrontendConfig(arch="xlsr300m", weights=weights), backend=BackendConfig())


def small() -> DetectorConfig:
    """Same architecture scaled down to train on a CPU in minutes (docs/performance.md).

    Front end: a log-magnitude STFT (512 points, hop 160) through a 4-block 2-D conv stem (16-32-32-32 channels;
    320 samples per frame, as wav2vec2's) in place of the waveform conv extractor, which learned no codec
    artifacts from scratch (docs/devcorpus.md); 2 transformer layers, width 128, 4 heads, no dropout. Back end: residual channels
    1->8->8->16->16->16->16 (paper: 1->32->32->64->64->64->64); graph sizes as in the paper (readout 160);
    dropout 0.2 before the output layer and none inside (the paper's 0.5/0.2/0.3 rates stall such short runs).
    Crop 16,000 samples (1 s). Adam lr 5e-4 (1e-3 and above diverge here); `train detector` draws balanced
    batches for it.
    """
    fe = FrontendConfig(
        arch="custom",
        extractor="logspec",
        conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
        embed_dim=128,
        num_layers=2,
        num_heads=4,
        ff_dim=256,
        pos_conv_kernel=32,
        pos_conv_groups=4,
        dropout=0.0,
        normalize_input=True,
    )
    be = BackendConfig(res_channels=(1, 8, 8, 16, 16, 16, 16), dropout=0.2, dropout_way=0.0,
                       gat_input_dropout=0.0, graph_pool_dropout=0.0)
    return DetectorConfig(name="small", frontend=fe, backend=be, crop=16000, segdiff_layers=(0, 1))


PRESETS = {"small": small, "xlsr300m": xlsr300m}


def preset(name: str, weights: str | None = None) -> DetectorConfig:
    """A named preset; ``weights`` is a local front-end checkpoint (required in practice for xlsr300m)."""
    if name not in PRESETS:
        raise ValueError(f"unknown detector config {name!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[name]()
    if weights is not None:
        cfg = replace(cfg, frontend=replace(cfg.frontend, weights=str(weights)))
    return cfg


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (paper: Adam lr 1e-6, wd 1e-4, batch 14, weighted CE, RawBoost algo 5)."""

    steps: int = 1000
    batch_size: int = 14
    lr: float = 1e-6
    weight_decay: float = 1e-4
    seed: int = 0
    class_weights: tuple[float, float] | None = None  # (bona fide, spoof); None = inverse class frequency
    balanced: bool = False  # batches drawn half bona fide, half spoof (then unweighted CE unless class_weights)
    rawboost_algo: int = 0
    rawboost_prob: float = 1.0
    save_every: int = 200
    grad_clip: float | None = None
    precise_bn_batches: int = 16  # re-estimate BatchNorm statistics on this many train batches before saving (0 = off)
    extra: dict = field(default_factory=dict)


