"""The LibriSeVoc reader on a tiny corpus in its real layout, and the split assigner."""
import numpy as np
import pytest
import soundfile as sf

from annotate.sources import SourceError, read_source
from annotate.pipeline.splits import assign_splits

IDS = ["27_123349_000006_000000", "27_123349_000007_000000", "1034_121119_000001_000000"]


def _wav(path, n=800, sr=24000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(n, np.float32), sr)


@pytest.fixture
def lsv(tmp_path):
    root = tmp_path / "LibriSeVoc"
    for i in IDS:
        _wav(root / "gt" / f"{i}.wav")
        for voc in ("melgan", "wavernn"):
            _wav(root / voc / f"{i}_gen.wav")
    _wav(root / "melgan" / "999_1_000001_000000_gen.wav")  # spoof without its real
    (root / "melgan" / "notes.txt").write_text("not audio")
    (root / "train.txt").write_text(f"gt/{IDS[0]}.wav\n{IDS[2]}.wav\n")
    (root / "test.txt").write_text(f"/data/LibriSeVoc/gt/{IDS[1]}.wav\n")
    return root


def test_pairs_vocoders_speakers_and_official_splits(lsv):
    pairs, rejects = read_source("librisevoc", lsv.parent)  # the parent of LibriSeVoc/ works too
    assert len(pairs) == 6
    assert {p.vocoder for p in pairs} == {"melgan", "wavernn"}
    by_id = {p.id: p for p in pairs}
    p = by_id[f"melgan__{IDS[2]}"]
    assert p.speaker == "1034" and p.utt_id == IDS[2] and p.split == "train" and p.source == "librisevoc"
    assert p.real_path.endswith(f"gt/{IDS[2]}.wav") and p.spoof_path.endswith(f"melgan/{IDS[2]}_gen.wav")
    assert by_id[f"wavernn__{IDS[1]}"].split == "test"
    assert [r.id for r in rejects] == ["melgan__999_1_000001_000000"]
    assert "no real twin" in rejects[0].reason


def test_duplicate_id_is_rejected(lsv):
    _wav(lsv / "melgan" / f"{IDS[0]}_gen.flac")
    pairs, rejects = read_source("librisevoc", lsv)
    assert len(pairs) == 6
    assert any(r.id == f"melgan__{IDS[0]}" and "duplicated id" in r.reason for r in rejects)


def test_missing_root_and_unknown_source_are_one_line_errors(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        read_source("librisevoc", tmp_path / "nope")
    with pytest.raises(SourceError, match="no gt/ folder"):
        read_source("librisevoc", tmp_path)
    with pytest.raises(SourceError, match="unknown source"):
        read_source("librisevox", tmp_path)


def test_split_policies_keep_utterances_together(lsv):
    pairs, _ = read_source("librisevoc", lsv)
    for policy in ("official", "utterance", "speaker"):
        out = assign_splits(pairs, policy, seed=3)
        assert all(p.split in ("train", "dev", "test") for p in out)
        by_utt = {}
        for p in out:
            by_utt.setdefault(p.utt_id, set()).add(p.split)
        assert all(len(s) == 1 for s in by_utt.values())
    official = {p.id: p.split for p in assign_splits(pairs, "official")}
    assert official[f"melgan__{IDS[1]}"] == "test"
    spk = assign_splits(pairs, "speaker", seed=3)
    by_spk = {}
    for p in spk:
        by_spk.setdefault(p.speaker, set()).add(p.split)
    assert all(len(s) == 1 for s in by_spk.values())
    assert assign_splits(pairs, "utterance", seed=3) == assign_splits(pairs, "utterance", seed=3)
