"""Wav2Vec2-AASIST (Tak et al. 2022): a wav2vec2/XLS-R front end + the AASIST graph-attention back end
(Jung et al. 2022), written from the papers' descriptions.

Convention: ``forward(wave (B, N)) -> logits (B, 2)``, index 0 = bona fide, index 1 = spoof.
Every module is used once per forward (captum's DeepLift breaks on reused modules).
Grad-CAM hook point ("last temporal layer"): ``model.backend.temporal_map`` (an ``nn.Identity``)
whose output is the residual encoder's map ``(B, C, S, T)``, time LAST; one time step covers
``pool * frontend.stride`` samples (960 for both presets).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .config import CONVENTION, BackendConfig, DetectorConfig, FrontendConfig

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"


# ----------------------------------------------------------------------------------------------- back end


class ResBlock(nn.Module):
    """2-D residual block of the SSL-AASIST encoder (no pooling): [BN-SELU]-conv(2,3)-BN-SELU-conv(2,3) + skip."""

    def __init__(self, c_in: int, c_out: int, first: bool):
        super().__init__()
        self.pre = nn.Identity() if first else nn.Sequential(nn.BatchNorm2d(c_in), nn.SELU())
        self.conv1 = nn.Conv2d(c_in, c_out, (2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = nn.SELU()
        self.conv2 = nn.Conv2d(c_out, c_out, (2, 3), padding=(0, 1))
        self.skip = nn.Conv2d(c_in, c_out, (1, 3), padding=(0, 1)) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.act2(self.bn2(self.conv1(self.pre(x)))))
        return out + self.skip(x)


def _pair_scores(x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
    """tanh(W (x_i * x_j)) for every node pair: (B, N, D) -> (B, N, N, D')."""
    return torch.tanh(proj(x.unsqueeze(2) * x.unsqueeze(1)))


class GraphAttention(nn.Module):
    """GAT layer of AASIST: pairwise-product attention (softmax over neighbours / temperature),
    aggregated and residual projections summed, then BN and SELU."""

    def __init__(self, d_in: int, d_out: int, temp: float, input_dropout: float):
        super().__init__()
        self.drop = nn.Dropout(input_dropout)
        self.att_proj = nn.Linear(d_in, d_out)
        self.att_weight = nn.Parameter(torch.empty(d_out, 1))
        nn.init.xavier_normal_(self.att_weight)
        self.proj_att = nn.Linear(d_in, d_out)
        self.proj_self = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.act = nn.SELU()
        self.temp = temp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        att = torch.softmax((_pair_scores(x, self.att_proj) @ self.att_weight).squeeze(-1) / self.temp, dim=-1)
        out = self.proj_att(att @ x) + self.proj_self(x)
        return self.act(self.bn(out.transpose(1, 2)).transpose(1, 2))


class GraphPool(nn.Module):
    """Graph pooling: sigmoid node scores gate the features, the top ``ratio`` of nodes are kept."""

    def __init__(self, ratio: float, d: int, dropout: float):
        super().__init__()
        self.ratio = ratio
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(d, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))  # (B, N, 1)
        k = max(int(h.size(1) * self.ratio), 1)
        idx = torch.topk(scores, k, dim=1).indices.expand(-1, -1, h.size(2))
        return torch.gather(h * scores, 1, idx)


class HSGAL(nn.Module):
    """Heterogeneous stacking graph attention layer: temporal + spectral nodes in one graph with
    type-pair attention weights (TT, SS, TS) and a master node that attends to all nodes."""

    def __init__(self, d_in: int, d_out: int, temp: float, input_dropout: float):
        super().__init__()
        self.proj_t = nn.Linear(d_in, d_in)
        self.proj_s = nn.Linear(d_in, d_in)
        self.drop = nn.Dropout(input_dropout)
        self.att_proj = nn.Linear(d_in, d_out)
        self.att_proj_m = nn.Linear(d_in, d_out)
        self.w_tt = nn.Parameter(torch.empty(d_out, 1))
        self.w_ss = nn.Parameter(torch.empty(d_out, 1))
        self.w_ts = nn.Parameter(torch.empty(d_out, 1))
        self.w_m = nn.Parameter(torch.empty(d_out, 1))
        for w in (self.w_tt, self.w_ss, self.w_ts, self.w_m):
            nn.init.xavier_normal_(w)
        self.proj_att = nn.Linear(d_in, d_out)
        self.proj_self = nn.Linear(d_in, d_out)
        self.proj_att_m = nn.Linear(d_in, d_out)
        self.proj_self_m = nn.Linear(d_in, d_out)
        self.bn = nn.BatchNorm1d(d_out)
        self.act = nn.SELU()
        self.temp = temp

    def forward(self, t: torch.Tensor, s: torch.Tensor, master: torch.Tensor):
        nt = t.size(1)
        x = self.drop(torch.cat([self.proj_t(t), self.proj_s(s)], dim=1))  # (B, N, D)
        n = x.size(1)
        a = _pair_scores(x, self.att_proj)  # (B, N, N, D')
        is_t = torch.arange(n, device=x.device) < nt
        same_t = (is_t[:, None] & is_t[None, :]).to(x.dtype)[..., None]
        same_s = (~is_t[:, None] & ~is_t[None, :]).to(x.dtype)[..., None]
        cross = 1.0 - same_t - same_s
        scores = (a @ self.w_tt) * same_t + (a @ self.w_ss) * same_s + (a @ self.w_ts) * cross
        att = torch.softmax(scores.squeeze(-1) / self.temp, dim=-1)
        # master node: attention over all nodes from tanh(W (x_i * m))
        am = (torch.tanh(self.att_proj_m(x * master)) @ self.w_m).squeeze(-1)  # (B, N)
        am = torch.softmax(am / self.temp, dim=-1).unsqueeze(1)  # (B, 1, N)
        master = self.proj_att_m(am @ x) + self.proj_self_m(master)
        out = self.proj_att(att @ x) + self.proj_self(x)
        out = self.act(self.bn(out.transpose(1, 2)).transpose(1, 2))
        return out[:, :nt], out[:, nt:], master


class Branch(nn.Module):
    """One of the two parallel HS-GAL branches: HS-GAL -> pool -> HS-GAL (residual), own master node."""

    def __init__(self, cfg: BackendConfig):
        super().__init__()
        d0, (d1, d2) = cfg.gat_dim, cfg.hs_dims
        self.master = nn.Parameter(torch.randn(1, 1, d0))
        self.hs1 = HSGAL(d0, d1, cfg.hs_temp, cfg.gat_input_dropout)
        self.pool_t = GraphPool(cfg.hs_pool, d1, cfg.graph_pool_dropout)
        self.pool_s = GraphPool(cfg.hs_pool, d1, cfg.graph_pool_dropout)
        self.hs2 = HSGAL(d1, d2, cfg.hs_temp, cfg.gat_input_dropout)
        self.drop_t = nn.Dropout(cfg.dropout_way)
        self.drop_s = nn.Dropout(cfg.dropout_way)
        self.drop_m = nn.Dropout(cfg.dropout_way)

    def forward(self, t: torch.Tensor, s: torch.Tensor):
        t1, s1, m1 = self.hs1(t, s, self.master.expand(t.size(0), -1, -1))
        t1, s1 = self.pool_t(t1), self.pool_s(s1)
        t2, s2, m2 = self.hs2(t1, s1, m1)
        return self.drop_t(t1 + t2), self.drop_s(s1 + s2), self.drop_m(m1 + m2)


class AASISTBackend(nn.Module):
    """SSL features (B, T', D) -> (logits (B, 2), readout (B, 5 * hs_dims[1]))."""

    def __init__(self, d_ssl: int, cfg: BackendConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.res_channels
        c = ch[-1]
        self.proj = nn.Linear(d_ssl, cfg.proj_dim)
        self.pool = nn.MaxPool2d(cfg.pool)
        self.bn0 = nn.BatchNorm2d(1)
        self.act0 = nn.SELU()
        self.encoder = nn.Sequential(*[ResBlock(ch[i], ch[i + 1], first=i == 0) for i in range(len(ch) - 1)])
        self.temporal_map = nn.Identity()  # Grad-CAM hook: (B, C, S, T), time last
        self.bn1 = nn.BatchNorm2d(c)
        self.act1 = nn.SELU()
        self.attention = nn.Sequential(nn.Conv2d(c, 128, 1), nn.SELU(), nn.BatchNorm2d(128), nn.Conv2d(128, c, 1))
        self.pos_s = nn.Parameter(torch.randn(1, cfg.n_spectral, c))
        self.gat_s = GraphAttention(c, cfg.gat_dim, cfg.gat_temp, cfg.gat_input_dropout)
        self.gat_t = GraphAttention(c, cfg.gat_dim, cfg.gat_temp, cfg.gat_input_dropout)
        self.pool_s = GraphPool(cfg.gat_pool, cfg.gat_dim, cfg.graph_pool_dropout)
        self.pool_t = GraphPool(cfg.gat_pool, cfg.gat_dim, cfg.graph_pool_dropout)
        self.branch1 = Branch(cfg)
        self.branch2 = Branch(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.embed_dim, 2)

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """The penultimate readout [max|T|, mean T, max|S|, mean S, master] (the neural-collapse embedding)."""
        x = self.proj(feats).transpose(1, 2).unsqueeze(1)  # (B, 1, proj_dim, T')
        x = self.act0(self.bn0(self.pool(x)))
        x = self.temporal_map(self.encoder(x))  # (B, C, S, T)
        x = self.act1(self.bn1(x))
        w = self.attention(x)
        spec = (x * torch.softmax(w, dim=-1)).sum(-1).transpose(1, 2)  # (B, S, C): spectral nodes
        temp = (x * torch.softmax(w, dim=-2)).sum(-2).transpose(1, 2)  # (B, T, C): temporal nodes
        s = self.pool_s(self.gat_s(spec + self.pos_s))
        t = self.pool_t(self.gat_t(temp))
        t1, s1, m1 = self.branch1(t, s)
        t2, s2, m2 = self.branch2(t, s)
        t, s, m = torch.maximum(t1, t2), torch.maximum(s1, s2), torch.maximum(m1, m2)
        return torch.cat([t.abs().amax(1), t.mean(1), s.abs().amax(1), s.mean(1), m.squeeze(1)], dim=1)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(feats)
        return self.out(self.drop(emb)), emb


# ----------------------------------------------------------------------------------------------- front end


class LogFloor(nn.Module):
    """``log(x + floor)`` as a module, so DeepLift's Rescale rule can treat it as the element-wise
    non-linearity it is (as a plain call, its gradient near the floor, up to 1/floor, would stand for it)."""

    def __init__(self, floor: float = 1e-5):
        super().__init__()
        self.floor = floor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x + self.floor)


class LogSpecExtractor(nn.Module):
    """In place of wav2vec2's conv feature extractor (``FrontendConfig.extractor == "logspec"``): log-magnitude
    STFT frames through a 2-D conv stem, flattened per frame. Same call and output layout as torchaudio's
    ``FeatureExtractor``: ``(wave (B, N), lengths) -> ((B, T', C x F'), None)``."""

    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        self.n_fft, self.hop = cfg.spec_n_fft, cfg.spec_hop
        self.register_buffer("window", torch.hann_window(cfg.spec_n_fft), persistent=False)
        blocks, c_in = [], 1
        for i, c in enumerate(cfg.spec_channels):  # separate modules per block (captum's DeepLift hooks modules)
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                        nn.MaxPool2d((2, 2 if i == 0 else 1))))
            c_in = c
        # channels-last weights keep the stem's activations channels-last: torch's CPU max-pool is ~10x faster
        # there than in NCHW (docs/performance.md); loading a state dict keeps the layout
        self.blocks = nn.Sequential(*blocks).to(memory_format=torch.channels_last)
        self.log = LogFloor(1e-5)  # the floor keeps silence finite

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None):
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=False, return_complex=True).abs()
        h = self.blocks(self.log(spec).unsqueeze(1))  # (B, C, F', T')
        b, c, f, t = h.shape
        return h.permute(0, 3, 1, 2).reshape(b, t, c * f), None


def build_frontend(cfg: FrontendConfig) -> nn.Module:
    """A torchaudio Wav2Vec2Model for ``cfg`` (weights imported from ``cfg.weights`` when given); with
    ``extractor="logspec"`` its conv feature extractor is replaced by :class:`LogSpecExtractor`."""
    from torchaudio.models import wav2vec2_model, wav2vec2_xlsr_300m

    if cfg.arch == "xlsr300m" and cfg.num_layers == 24:
        ssl = wav2vec2_xlsr_300m(
            encoder_projection_dropout=cfg.dropout, encoder_attention_dropout=cfg.dropout,
            encoder_ff_interm_dropout=cfg.dropout, encoder_dropout=cfg.dropout, encoder_layer_drop=0.0,
        )
    elif cfg.arch in ("xlsr300m", "custom"):
        ssl = wav2vec2_model(
            extractor_mode=cfg.extractor_mode, extractor_conv_layer_config=[tuple(c) for c in cfg.conv_layers],
            extractor_conv_bias=cfg.conv_bias, encoder_embed_dim=cfg.embed_dim, encoder_projection_dropout=cfg.dropout,
            encoder_pos_conv_kernel=cfg.pos_conv_kernel, encoder_pos_conv_groups=cfg.pos_conv_groups,
            encoder_num_layers=cfg.num_layers, encoder_num_heads=cfg.num_heads, encoder_attention_dropout=cfg.dropout,
            encoder_ff_interm_features=cfg.ff_dim, encoder_ff_interm_dropout=cfg.dropout, encoder_dropout=cfg.dropout,
            encoder_layer_norm_first=cfg.layer_norm_first, encoder_layer_drop=0.0, aux_num_out=None,
        )
    else:
        raise ValueError(f"unknown front-end arch {cfg.arch!r}; use 'custom' or 'xlsr300m'")
    if cfg.extractor == "logspec":
        from torchaudio.models.wav2vec2.components import FeatureProjection

        ssl.feature_extractor = LogSpecExtractor(cfg)
        ssl.encoder.feature_projection = FeatureProjection(cfg.feature_dim, cfg.embed_dim, cfg.dropout)
    elif cfg.extractor != "conv":
        raise ValueError(f"unknown feature extractor {cfg.extractor!r}; use 'conv' or 'logspec'")
    if cfg.weights:
        from .weights import load_into

        load_into(ssl, cfg.weights)
    return ssl


# ----------------------------------------------------------------------------------------------- detector


class Wav2Vec2AASIST(nn.Module):
    """The detector. ``forward(wave (B, N) at 16 kHz) -> logits (B, 2)``: index 0 = bona fide, 1 = spoof."""

    convention = CONVENTION

    def __init__(self, cfg: DetectorConfig, *, load_frontend_weights: bool = True):
        super().__init__()
        self.config = cfg
        fe = cfg.frontend if load_frontend_weights else _without_weights(cfg.frontend)
        self.ssl = build_frontend(fe)
        self.backend = AASISTBackend(cfg.frontend.embed_dim, cfg.backend)

    @property
    def gradcam_layer(self) -> nn.Module:
        """The "last temporal layer" for Grad-CAM: output (B, C, S, T) with time last."""
        return self.backend.temporal_map

    @property
    def num_layers(self) -> int:
        return len(self.ssl.encoder.transformer.layers)

    def _frontend(self, wave: torch.Tensor, collect: Sequence[int] = (), final: bool = True):
        """Run the SSL model once; returns (last hidden state with final norm or None, {layer: (B, T', D)})."""
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(f"expected a waveform batch (B, N), got shape {tuple(wave.shape)}")
        a = self.config.frontend.pre_emphasis
        if a:
            wave = torch.cat([wave[:, :1], wave[:, 1:] - a * wave[:, :-1]], dim=1)
        if self.config.frontend.normalize_input:
            wave = (wave - wave.mean(1, keepdim=True)) / (wave.std(1, keepdim=True) + 1e-7)
        feats, _ = self.ssl.feature_extractor(wave, None)
        x, _ = self.ssl.encoder._preprocess(feats, None)
        tr = self.ssl.encoder.transformer
        wanted = set(collect)
        bad = [i for i in wanted if not 0 <= i < len(tr.layers)]
        if bad:
            raise ValueError(f"layers {bad} out of range: this front end has {len(tr.layers)} transformer layers (0-based)")
        last = len(tr.layers) - 1 if final else max(wanted, default=-1)
        x = tr._preprocess(x)
        out, bias = {}, None
        for i, layer in enumerate(tr.layers):
            if i > last:
                break
            x, bias = layer(x, None, position_bias=bias)
            if i in wanted:
                out[i] = x
        if not final:
            return None, out
        if not tr.layer_norm_first:
            x = tr.layer_norm(x)
        return x, out

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2): index 0 = bona fide, index 1 = spoof."""
        return self.backend(self._frontend(wave)[0])[0]

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """The penultimate readout (B, 5 * hs_dims[1]) = (B, 160) for both presets."""
        return self.backend.embed(self._frontend(wave)[0])

    def layer_features(self, wave: torch.Tensor, layers: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Transformer layer outputs (each (B, T', D)) for ``layers`` (default ``config.segdiff_layers``), for ADDSegDiff."""
        layers = list(self.config.segdiff_layers if layers is None else layers)
        _, out = self._frontend(wave, layers, final=False)
        return [out[i] for i in layers]

    def forward_all(self, wave: torch.Tensor, layers: Sequence[int] | None = None) -> dict:
        """One pass: ``logits``, ``embedding`` and ``layers`` (list of (B, T', D)) together."""
        layers = list(self.config.segdiff_layers if layers is None else layers)
        x, out = self._frontend(wave, layers)
        logits, emb = self.backend(x)
        return {"logits": logits, "embedding": emb, "layers": [out[i] for i in layers]}

    @torch.no_grad()
    def score(self, wave: torch.Tensor) -> torch.Tensor:
        """Spoof score = logit[spoof] - logit[bona fide] (higher = more likely spoof)."""
        logits = self(wave)
        return logits[:, 1] - logits[:, 0]


def _without_weights(fe: FrontendConfig) -> FrontendConfig:
    from dataclasses import replace

    return replace(fe, weights=None)


# ----------------------------------------------------------------------------------------------- save / load


def save_detector(model: Wav2Vec2AASIST, folder: str | Path, extra: dict | None = None) -> Path:
    """Write ``config.json`` (config + label convention + ``extra``) and ``model.pt`` (state dict) atomically."""
    import os

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"config": model.config.to_dict(), "convention": CONVENTION, "labels": ["bonafide", "spoof"], **(extra or {})}
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, folder / WEIGHTS_FILE)
    tmpc = folder / (CONFIG_FILE + ".tmp")
    tmpc.write_text(json.dumps(meta, indent=2))
    os.replace(tmpc, folder / CONFIG_FILE)
    return folder


def read_meta(path: str | Path) -> tuple[Path, dict]:
    """(weights file, parsed config.json) for a checkpoint folder or its ``model.pt``."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    weights = p if p.is_file() else folder / WEIGHTS_FILE
    cfg = folder / CONFIG_FILE
    if not weights.exists() or not cfg.exists():
        raise FileNotFoundError(f"{path}: not a detector checkpoint (need {WEIGHTS_FILE} and {CONFIG_FILE}; train one with `train detector`)")
    return weights, json.loads(cfg.read_text())


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> Wav2Vec2AASIST:
    """Rebuild a saved detector in eval mode (front-end weights come from the checkpoint, not re-imported)."""
    weights, meta = read_meta(path)
    cfg = DetectorConfig.from_dict(meta["config"])
    model = Wav2Vec2AASIST(cfg, load_frontend_weights=False)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.to(device).eval()
