"""SegDiff explainers (SpecSegDiff, ADDSegDiff): a diffusion UNet that samples artifact masks.

Modules: ``config`` (named presets), ``model`` (UNet + RRDB encoder), ``diffusion`` (DDPM/DDIM maths),
``data`` (dataset crops), ``train``, ``infer`` (cached/batched sampling, submissions), ``cli``.
"""
