"""The default demo corpus holds codec spoofs (MP3 and Opus at low bit rates, as in Codecfake-style data):
it builds, the codec lags are recovered to the sample, and the small detector trains and is evaluated on it."""
from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def codec_demo(tmp_path_factory):
    from annotate.pipeline.build import BuildConfig, build
    from annotate.sources.demo import VOCODERS, ensure

    assert {"mp3", "opus"} <= set(VOCODERS)  # part of the default demo
    root = ensure(tmp_path_factory.mktemp("codecdemo") / "LibriSeVoc", n_speakers=2, utts_per_speaker=2, seed=1)
    ds = tmp_path_factory.mktemp("codecds") / "ds"
    build(BuildConfig(source="demo", root=str(root), shard_size=16), ds, progress=False)
    return root, ds


def test_codec_spoofs_build_and_align_to_the_sample(codec_demo):
    import soundfile as sf

    from annotate.core.dataset import read_table
    from annotate.sources.demo import load_truth

    root, ds = codec_demo
    rows = read_table(ds, columns=["id", "vocoder", "offset"]).to_pylist()
    assert {r["vocoder"] for r in rows} == {"griffinlim", "world", "lpc", "mp3", "opus"}
    assert sum(r["vocoder"] in ("mp3", "opus") for r in rows) == 8
    truth = load_truth(root)
    ratio = 16000 / sf.info(str(next((root / "gt").glob("*.wav")))).samplerate
    err = [abs(r["offset"] - truth[r["id"]] * ratio) for r in rows if r["vocoder"] in ("mp3", "opus")]
    assert max(err) <= 4, err  # a quarter of a millisecond at 16 kHz (truth is at the corpus's 24 kHz)


def test_small_detector_trains_and_reports_codecs(codec_demo, tmp_path):
    import torch

    from training.cli import main
    from training.detector import preset
    from training.detector.config import TrainConfig
    from training.detector.train import train

    _, ds = codec_demo
    ck = tmp_path / "det"
    train(ds, ck, preset("small"), TrainConfig(steps=6, batch_size=4, lr=5e-4, seed=0, save_every=1000), progress=False)
    assert torch.load(ck / "model.pt", weights_only=True)
    out = tmp_path / "ev"
    assert main(["evaluate", "--detector", str(ck), "--dataset", str(ds), "--split", "train", "-o", str(out),
                 "--no-progress", "--threads", "1"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    assert {"mp3", "opus"} <= set(res["per_vocoder"])
    assert np.isfinite(res["eer"])
