"""Wav2Vec2-AASIST detector: logits (B, 2), index 0 = bona fide, index 1 = spoof."""
from .config import CONVENTION, BackendConfig, DetectorConfig, FrontendConfig, TrainConfig, preset
from .model import Wav2Vec2AASIST, load_detector, save_detector

__all__ = [
    "CONVENTION", "BackendConfig", "DetectorConfig", "FrontendConfig", "TrainConfig", "preset",
    "Wav2Vec2AASIST", "load_detector", "save_detector",
]
