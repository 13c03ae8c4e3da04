"""The names of the explainers ``explain --method`` accepts (a light module: the CLI lists them without torch)."""
from __future__ import annotations

from .chance import CHANCE

DETECTOR_METHODS = ("deepshap", "gradientshap", "attnlrp", "gradcam")
SEGDIFF_METHODS = ("specsegdiff", "addsegdiff")
UNET_METHOD = "unet"
METHODS = DETECTOR_METHODS + CHANCE + SEGDIFF_METHODS + (UNET_METHOD,)
