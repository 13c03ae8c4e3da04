"""Supervised U-Net explainer: the spoof log-magnitude in, the artefact mask's probability out (no diffusion).

Modules: config (frozen configs, presets), model (the U-Net), train (BCE + soft Dice on SegDiff's crops,
resumable), infer (checkpoints, heatmaps, submissions), commands (``train unet``).
"""
