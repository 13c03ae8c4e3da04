"""CPU cost of DeepSHAP per utterance for several detectors (one thread, one run, ratios to the first):

    python perf/shap_cost.py --dataset runs/devcorpus/ds --detector runs/exp/det_default --detector runs/exp/det_logspec

Explains the first test row (all its windows) with ``--references`` bona fide references taken from the row's
own real twin, and also times one plain forward + backward of 40 one-second crops.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--detector", action="append", required=True)
    ap.add_argument("--references", type=int, default=4)
    a = ap.parse_args()
    import torch

    from annotate.core.audio import decode_bytes
    from annotate.core.dataset import iter_rows
    from baselines.rawwrapper import RawWrapper, make_windows, spectrogram
    from baselines.shap import ShapConfig, deepshap
    from training.detector import load_detector

    torch.set_num_threads(1)
    row = next(iter(iter_rows(a.dataset, "test", ["id", "spoof_audio", "real_audio"])))
    x, _ = decode_bytes(row["spoof_audio"]["bytes"])
    real, _ = decode_bytes(row["real_audio"]["bytes"])
    first = None
    for ck in a.detector:
        det = load_detector(ck)
        wrapper = RawWrapper(det, det.config.crop)
        logmag, phase = spectrogram(make_windows(x, det.config.crop).crops)
        refs = spectrogram(make_windows(real, det.config.crop).crops)[0][:1].repeat(a.references, 1, 1)
        deepshap(wrapper, logmag[:1], phase[:1], refs[:2], ShapConfig(n_references=2))  # warm-up
        t0 = time.process_time()
        deepshap(wrapper, logmag, phase, refs, ShapConfig(n_references=a.references))
        shap_s = time.process_time() - t0
        crops = torch.randn(40, det.config.crop, requires_grad=True)
        t0 = time.process_time()
        det(crops)[:, 1].sum().backward()
        fb_s = time.process_time() - t0
        first = first or (shap_s, fb_s)
        print(f"{ck}: DeepSHAP {shap_s:.2f} CPU-s ({logmag.shape[0]} windows, {a.references} references; "
              f"x{shap_s / first[0]:.2f}), forward+backward of 40 crops {fb_s:.2f} CPU-s (x{fb_s / first[1]:.2f})")


if __name__ == "__main__":
    main()
