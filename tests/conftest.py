"""Session fixtures: a small demo corpus (LibriSeVoc layout, generated offline) and its built dataset."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# the session corpus keeps the three vocoders (small and quick); tests/test_demo_codecs.py covers the default with codecs
DEMO_KW = dict(n_speakers=4, utts_per_speaker=6, seed=0, vocoders=("griffinlim", "world", "lpc"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Never read or write the user's cache from tests."""
    old = os.environ.get("VOCMASK_CACHE")
    os.environ["VOCMASK_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("VOCMASK_CACHE", None)
    else:
        os.environ["VOCMASK_CACHE"] = old


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small models run far faster single-threaded on a shared 2-core CPU; restored after each test."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """24 real utterances x 3 vocoders (Griffin-Lim, WORLD, LPC) at 24 kHz, with truth.json holding the true offsets."""
    from annotate.sources.demo import ensure

    root = tmp_path_factory.mktemp("demo") / "LibriSeVoc"
    ensure(root, **DEMO_KW)
    return root


@pytest.fixture(scope="session")
def demo_ds(tmp_path_factory, demo_corpus) -> Path:
    """The demo corpus built into a dataset (train/dev/test shards) with default settings."""
    from annotate.pipeline.build import BuildConfig, build

    out = tmp_path_factory.mktemp("ds") / "demo_ds"
    build(BuildConfig(source="demo", root=str(demo_corpus), shard_size=16), out, workers=1, progress=False)
    return out


def copy_subset(demo_corpus: Path, dest: Path, n_utts: int) -> list[str]:
    """Copy the first ``n_utts`` real utterances of the demo corpus and all their spoofs (LibriSeVoc layout)."""
    import shutil

    utts = sorted(p.stem for p in (demo_corpus / "gt").glob("*.wav"))[:n_utts]
    for d in [p for p in demo_corpus.iterdir() if p.is_dir()]:
        (dest / d.name).mkdir(parents=True, exist_ok=True)
        for u in utts:
            for f in d.glob(f"{u}*.wav"):
                shutil.copy(f, dest / d.name / f.name)
    return utts


@pytest.fixture
def subset_corpus(demo_corpus, tmp_path):
    """``subset_corpus(n)`` -> (root, utt ids): a LibriSeVoc-layout copy of n demo utterances."""

    def make(n: int):
        root = tmp_path / f"LibriSeVoc{n}"
        return root, copy_subset(demo_corpus, root, n)

    return make
