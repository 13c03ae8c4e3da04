"""CPU cost of DeepSHAP per window (one thread, one run, ratios to the first row):

    python perf/shap_cost.py --dataset runs/devcorpus/ds --detector runs/exp/det_logspec

Explains the first ``--windows`` windows of the first test row against ``--references`` bona fide references
(the row's real twin's crops, flipped for more) in three ways: captum's ``DeepLiftShap`` fed 5 references a
call (the former code: every (window, reference) pair of a call in one batch), ``baselines.shap.deepshap``
with ``--batch`` pairs a call, and the same with the log-spectral stem's weights in NCHW instead of
channels-last. Prints CPU-seconds per window (20 references) and the largest difference to the first.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--detector", required=True)
    ap.add_argument("--references", type=int, default=20)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--batch", type=int, nargs="+", default=[2, 4, 8])
    a = ap.parse_args()
    import torch
    from captum.attr import DeepLiftShap

    from annotate.core.audio import decode_bytes
    from annotate.core.dataset import iter_rows
    from baselines.rawwrapper import SPOOF, RawWrapper, make_windows, spectrogram
    from baselines.shap import ShapConfig, deepshap, rescale_rules
    from training.detector import load_detector

    torch.set_num_threads(1)
    row = next(iter(iter_rows(a.dataset, "test", ["id", "spoof_audio", "real_audio"])))
    x, _ = decode_bytes(row["spoof_audio"]["bytes"])
    real, _ = decode_bytes(row["real_audio"]["bytes"])
    det = load_detector(a.detector)
    wrapper = RawWrapper(det, det.config.crop).eval()
    logmag, phase = spectrogram(make_windows(x, det.config.crop).crops)
    logmag, phase = logmag[: a.windows], phase[: a.windows]
    own = spectrogram(make_windows(real, det.config.crop).crops)[0]
    refs = torch.cat([own, own.flip(1), own.flip(2), own.flip(1, 2)]).repeat(a.references, 1, 1)[: a.references]
    w, r = logmag.shape[0], refs.shape[0]

    def former() -> torch.Tensor:
        total = torch.zeros_like(logmag)
        with rescale_rules(True), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for s in range(0, r, 5):
                part = refs[s : s + 5]
                attr = DeepLiftShap(wrapper).attribute(logmag.clone().requires_grad_(True), baselines=part, target=SPOOF,
                                                       additional_forward_args=(phase,))
                total += attr.detach() * part.shape[0]
        return total / r

    def timed(f):
        t0 = time.process_time()
        out = f()
        return time.process_time() - t0, out

    deepshap(wrapper, logmag[:1], phase[:1], refs[:2], ShapConfig(n_references=2))  # warm-up
    rows = [("captum DeepLiftShap, 5 references a call (former)", *timed(former))]
    for b in a.batch:
        rows.append((f"pairs, batch {b}", *timed(lambda: deepshap(wrapper, logmag, phase, refs, ShapConfig(n_references=r, batch=b))[0])))
    stem = det.ssl.feature_extractor
    if hasattr(stem, "blocks"):
        stem.blocks.to(memory_format=torch.contiguous_format)
        b = 4 if 4 in a.batch else a.batch[0]
        rows.append((f"pairs, batch {b}, stem in NCHW", *timed(lambda: deepshap(wrapper, logmag, phase, refs, ShapConfig(n_references=r, batch=b))[0])))
    base_s, base = rows[0][1], rows[0][2]
    print(f"{a.detector}: {w} windows x {r} references, first test row; CPU-s per window, ratio to the first row")
    for name, s, out in rows:
        diff = float((out - base).abs().max() / base.abs().max())
        print(f"  {name:52s} {s / w:6.2f}  x{base_s / s:4.2f}  max |diff| {diff:.1e} of max |attr|")


if __name__ == "__main__":
    main()
