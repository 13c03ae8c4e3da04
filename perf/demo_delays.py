"""A vocoder's own delay on the demo's speech: mean and sd of ``intrinsic_delay`` per vocoder (samples at 24 kHz).

    python perf/demo_delays.py [--utterances 12]

The demo measures this delay per utterance and adds it to the framing shift in truth.json; this prints how large
it is, so a change of vocoder shows up here first.
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from annotate.pipeline.vocoders import f0_track, intrinsic_delay, lpc, world
    from annotate.sources.demo import DemoConfig, make_speakers, synth_utterance
    from annotate.sources.demo.vocoders import voc_griffinlim

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utterances", type=int, default=12)
    a = ap.parse_args()
    sr, speakers = 24000, make_speakers(DemoConfig())
    vocoders = {"griffinlim": lambda x, rng, f0t: voc_griffinlim(x, sr, rng),
                "world": lambda x, rng, f0t: world(x, sr, rng, f0t), "lpc": lambda x, rng, f0t: lpc(x, sr, rng, f0t)}
    delays: dict[str, list[int]] = {v: [] for v in vocoders}
    for i in range(a.utterances):
        x = synth_utterance(speakers[i % len(speakers)], np.random.default_rng([0, 10, i]), sr)
        f0t = f0_track(x, sr, 5.0)
        for j, (name, fn) in enumerate(vocoders.items()):
            delays[name].append(intrinsic_delay(x, fn(x, np.random.default_rng([0, 20, i, j]), f0t)))
    for name, d in delays.items():
        print(f"{name:<12} mean {np.mean(d):+6.1f} samples  sd {np.std(d):5.1f}  ({len(d)} utterances)")


if __name__ == "__main__":
    main()
