"""vocmask.baselines: classical XAI explainers of a waveform detector on the time-frequency grid.

- ``rawwrapper``: the detector as a model of (log-magnitude, phase); crop/tile windows and their map-back
- ``shap``: DeepSHAP / GradientSHAP (captum); ``attnlrp``: AttnLRP rules as a TorchFunctionMode
- ``gradcam``: time-only Grad-CAM; ``chance``: uniform, smoothed and energy baselines
- ``explain``: the resumable run loop writing submissions; ``cli``: the ``explain`` command
"""
