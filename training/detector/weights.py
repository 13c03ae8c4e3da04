"""Import pretrained wav2vec2 / XLS-R front-end weights from a LOCAL path (never downloads, never unpickles).

Accepted: a plain torch state dict (torchaudio, fairseq or Hugging Face key names; fairseq's
``{"model": ...}`` wrapper too) loaded with ``torch.load(weights_only=True)``; a Hugging Face folder
(``pytorch_model.bin``, or ``model.safetensors`` when ``safetensors`` is importable).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

HF_DROP = re.compile(r"^(masked_spec_embed|quantizer|project_q|project_hid|lm_head|adapter|dropout_features)")


def _hf_key(key: str) -> str | None:
    """Hugging Face ``Wav2Vec2Model`` key -> torchaudio key (None = not part of the front end)."""
    key = key.removeprefix("wav2vec2.")
    if HF_DROP.match(key):
        return None
    if key.startswith("feature_extractor."):
        return key
    if key.startswith("feature_projection."):
        return "encoder." + key
    if key.startswith("encoder."):
        return "encoder.transformer." + key[len("encoder."):]
    return None


def _weight_norm_names(key: str) -> str:
    """Old ``weight_g``/``weight_v`` names -> torch parametrization names used by torchaudio 2.x."""
    return key.replace("conv.weight_g", "conv.parametrizations.weight.original0").replace(
        "conv.weight_v", "conv.parametrizations.weight.original1"
    )


def convert_state_dict(sd: dict) -> dict:
    """Any supported key layout -> torchaudio ``Wav2Vec2Model`` keys."""
    if "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    keys = list(sd)
    if any(k.startswith("encoder.transformer.") for k in keys):
        out = dict(sd)
    elif any(".self_attn." in k or k.startswith(("post_extract_proj", "w2v_model.")) for k in keys):
        from torchaudio.models.wav2vec2.utils.import_fairseq import _convert_state_dict  # fairseq key map

        out = _convert_state_dict({k: v for k, v in sd.items() if not k.startswith("w2v_model.proj")})
    elif any(".attention." in k for k in keys):
        out = {}
        for k, v in sd.items():
            nk = _hf_key(k)
            if nk is not None:
                out[nk] = v
    else:
        raise ValueError(f"unrecognised state-dict layout (first keys: {keys[:3]}); expected torchaudio, fairseq or HF wav2vec2 keys")
    return {_weight_norm_names(k): v for k, v in out.items() if not k.startswith("aux.")}


def read_state_dict(path: str | Path) -> dict:
    """Load the tensors at ``path`` without executing pickled code."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"front-end weights {p} not found; pass a local XLS-R checkpoint (file or HF folder)")
    if p.is_dir():
        for name in ("pytorch_model.bin", "model.safetensors"):
            if (p / name).exists():
                return read_state_dict(p / name)
        raise FileNotFoundError(f"{p}: no pytorch_model.bin or model.safetensors inside")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(f"{p}: install `safetensors` to read .safetensors weights") from None
        return load_file(str(p))
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{p}: cannot be read with torch.load(weights_only=True) ({type(e).__name__}); fairseq checkpoints "
            "hold pickled config objects: re-save just the tensors (torch.save(ckpt['model'], 'xlsr_sd.pt')) once "
            "in a trusted environment and pass that file"
        ) from None


def load_into(ssl: torch.nn.Module, path: str | Path) -> None:
    """Copy the weights at ``path`` into ``ssl`` (a torchaudio Wav2Vec2Model); extra transformer layers
    in the file are ignored (shallower models), anything else missing or mis-shaped is an error."""
    sd = convert_state_dict(read_state_dict(path))
    own = ssl.state_dict()
    n_layers = len(ssl.encoder.transformer.layers)
    layer_re = re.compile(r"^encoder\.transformer\.layers\.(\d+)\.")
    keep = {}
    for k, v in sd.items():
        m = layer_re.match(k)
        if m and int(m.group(1)) >= n_layers:
            continue
        keep[k] = v
    missing = sorted(set(own) - set(keep))
    unexpected = sorted(set(keep) - set(own))
    bad = [k for k in set(own) & set(keep) if tuple(own[k].shape) != tuple(keep[k].shape)]
    if missing or unexpected or bad:
        raise ValueError(
            f"{path}: weights do not fit the front end: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(bad)} mis-shaped (e.g. {bad[:2]}); "
            "check --config matches the checkpoint (xlsr300m = XLS-R 300M)"
        )
    ssl.load_state_dict(keep, strict=True)
