"""ADDSegDiff's frozen detector: load it and turn waveform crops into stacked layer outputs."""
from __future__ import annotations

import torch


def load_frozen_detector(path: str):
    """The detector from ``train detector``, in eval mode with gradients off."""
    from training.detector.model import load_detector

    det = load_detector(path)
    for p in det.parameters():
        p.requires_grad_(False)
    return det.eval()


def detector_spec(det) -> tuple[tuple[int, ...], int]:
    """(layers ADDSegDiff reads by default, their width D) for a loaded detector."""
    return tuple(det.config.segdiff_layers), int(det.config.frontend.embed_dim)


def frame_geometry(det) -> tuple[int, int]:
    """(stride, receptive field) in samples of the detector's feature extractor: where its frames sit in time."""
    return det.config.frontend.geometry


@torch.no_grad()
def layer_features(det, audio: torch.Tensor, layers: tuple[int, ...]) -> torch.Tensor:
    """(B, N) waveforms -> (B, L, T', D): the chosen transformer layer outputs, stacked."""
    return torch.stack(det.layer_features(audio, list(layers)), dim=1).float()
