"""Grad-CAM (captum ``LayerGradCam``) on a late temporal layer of the detector: a time-only map, upsampled
to the spectrogram's frames and spread evenly over frequency (the partially-spoofed-audio seed)."""
from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from annotate.core.spectral import DEFAULT_STFT, STFTConfig

from .rawwrapper import SPOOF, RawWrapper


def gradcam_layer(detector: nn.Module) -> nn.Module:
    """The detector's Grad-CAM layer (``detector.gradcam_layer``: output ``(B, C, ..., T)``, time last)."""
    layer = getattr(detector, "gradcam_layer", None)
    if not isinstance(layer, nn.Module):
        raise ValueError(f"{type(detector).__name__} exposes no `gradcam_layer`; Grad-CAM needs a late temporal layer (time last)")
    return layer


def time_to_frames(cam: np.ndarray, n_samples: int, n_frames: int, cfg: STFTConfig = DEFAULT_STFT) -> np.ndarray:
    """``(W, T)`` maps over T evenly spaced steps of an ``n_samples`` input -> ``(W, n_frames)`` by linear
    interpolation between step centres and STFT frame centres (frame f is centred on sample f * hop)."""
    steps = cam.shape[-1]
    step_centres = (np.arange(steps) + 0.5) * n_samples / steps
    frame_centres = np.arange(n_frames) * cfg.hop_length
    return np.stack([np.interp(frame_centres, step_centres, c) for c in cam])


def gradcam_time(wrapper: RawWrapper, logmag: Tensor, phase: Tensor, layer: nn.Module | None = None) -> np.ndarray:
    """1-D Grad-CAM maps ``(W, frames)`` of the spoof class on the crops' STFT frames (ReLU'd; the layer's
    non-time axes averaged, then interpolated from its time steps to the frames)."""
    from captum.attr import LayerGradCam

    layer = layer if layer is not None else gradcam_layer(wrapper.detector)
    wrapper.eval()
    cam = LayerGradCam(wrapper, layer).attribute(
        logmag, target=SPOOF, additional_forward_args=(phase,), relu_attributions=True
    )  # (W, 1, ..., T)
    cam = cam.detach().reshape(cam.shape[0], -1, cam.shape[-1]).mean(1).double().numpy()
    return time_to_frames(cam, wrapper.length, logmag.shape[1], wrapper.cfg)


def gradcam(wrapper: RawWrapper, logmag: Tensor, phase: Tensor, layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM heatmaps ``(W, frames, F)`` of the spoof class (ReLU'd, time-only, constant over frequency)."""
    frames = gradcam_time(wrapper, logmag, phase, layer)
    return np.repeat(frames[:, :, None], logmag.shape[2], axis=2).astype(np.float32)
