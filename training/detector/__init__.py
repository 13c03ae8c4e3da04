"""Wav2Vec2-AASIST detector: logits (B, 2), index 0 = bona fide, index 1 = spoof.

Names are imported lazily (PEP 562) so that ``train --help`` does not load torch.
"""
from importlib import import_module

_EXPORTS = {
    "CONVENTION": "config", "BackendConfig": "config", "DetectorConfig": "config", "FrontendConfig": "config",
    "TrainConfig": "config", "preset": "config",
    "Wav2Vec2AASIST": "model", "load_detector": "model", "save_detector": "model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
