"""Corpus readers on tiny corpora built in their real on-disk layouts (tiny real WAV/FLAC files)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from annotate.sources import Pair, SourceError, read_source
from annotate.sources import codecfake, manifest, vocv4, wavefake

_rng = np.random.default_rng(0)


def _audio(path: Path, sr: int = 16000, n: int = 400) -> Path:
    """Write a short noise file (WAV or FLAC by suffix) with soundfile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * _rng.standard_normal(n)).astype(np.float32), sr)
    return path


def _by_id(pairs: list[Pair]) -> dict[str, Pair]:
    return {p.id: p for p in pairs}


def _check_common(pairs: list[Pair], source: str) -> None:
    assert [p.id for p in pairs] == sorted(p.id for p in pairs)
    for p in pairs:
        assert p.source == source
        assert isinstance(p.real_path, str) and isinstance(p.spoof_path, str)
        assert Path(p.real_path).is_file() and Path(p.spoof_path).is_file()
        assert sf.info(p.spoof_path).frames > 0


# ---------------------------------------------------------------- voc.v4


@pytest.fixture
def vocv4_corpus(tmp_path: Path) -> tuple[Path, Path]:
    voc = tmp_path / "project09-voc.v4" / "voc.v4"
    wav = voc / "wav"
    for v in ("hifigan", "hn-sinc-nsf", "hn-sinc-nsf-hifi", "waveglow"):
        _audio(wav / f"{v}_LA_T_1000001.wav")
    _audio(wav / "waveglow_LA_D_2000001.wav")
    _audio(wav / "hifigan_LA_D_2000001.wav")
    _audio(wav / "hifigan_LA_D_2000001.flac")  # same id twice -> duplicate reject
    _audio(wav / "hifigan_LA_T_1000002.wav")   # real not in the LA copy
    _audio(wav / "hifigan_LA_E_3000001.wav")   # not a voc.v4 name
    (wav / "README.txt").write_text("not audio")
    (voc / "protocol.txt").write_text(
        "LA_0079 hifigan_LA_T_1000001 - hifigan spoof\n"
        "LA_0079 hn-sinc-nsf_LA_T_1000001 - hn-sinc-nsf spoof\n"
        "LA_0079 hn-sinc-nsf-hifi_LA_T_1000001 - hn-sinc-nsf-hifi spoof\n"
        "LA_0079 waveglow_LA_T_1000001 - waveglow spoof\n"
        "LA_0080 LA_D_2000001 - - bonafide\n")
    la = tmp_path / "asv2019" / "LA"
    _audio(la / "ASVspoof2019_LA_train" / "flac" / "LA_T_1000001.flac")
    _audio(la / "ASVspoof2019_LA_dev" / "flac" / "LA_D_2000001.flac")
    return voc, la


def test_vocv4_pairs_ids_vocoders_speakers_splits(vocv4_corpus):
    voc, la = vocv4_corpus
    pairs, rejects = vocv4.read(voc, real_root=la.parent)
    _check_common(pairs, "vocv4")
    got = _by_id(pairs)
    assert set(got) == {"hifigan__LA_T_1000001", "hn-sinc-nsf__LA_T_1000001", "hn-sinc-nsf-hifi__LA_T_1000001",
                        "waveglow__LA_T_1000001", "waveglow__LA_D_2000001", "hifigan__LA_D_2000001"}
    # hn-sinc-nsf is a prefix of hn-sinc-nsf-hifi: each file keeps its own vocoder
    assert got["hn-sinc-nsf__LA_T_1000001"].vocoder == "hn-sinc-nsf"
    assert got["hn-sinc-nsf-hifi__LA_T_1000001"].vocoder == "hn-sinc-nsf-hifi"
    assert got["hn-sinc-nsf-hifi__LA_T_1000001"].spoof_path.endswith("hn-sinc-nsf-hifi_LA_T_1000001.wav")
    assert got["hn-sinc-nsf__LA_T_1000001"].spoof_path.endswith("/hn-sinc-nsf_LA_T_1000001.wav")
    t = got["waveglow__LA_T_1000001"]
    assert (t.utt_id, t.speaker, t.split) == ("LA_T_1000001", "LA_0079", "train")
    assert t.real_path == str(la / "ASVspoof2019_LA_train" / "flac" / "LA_T_1000001.flac")
    d = got["waveglow__LA_D_2000001"]
    assert (d.speaker, d.split) == ("LA_0080", "dev")  # speaker from the bona fide protocol row
    assert d.real_path.endswith("ASVspoof2019_LA_dev/flac/LA_D_2000001.flac")

    reasons = {r.id: r.reason for r in rejects}
    assert reasons["hifigan__LA_T_1000002"].startswith("no real twin: expected ")
    assert reasons["hifigan__LA_T_1000002"].endswith("ASVspoof2019_LA_train/flac/LA_T_1000002.flac")
    assert "duplicated id" in reasons["hifigan__LA_D_2000001"]
    assert "hifigan_LA_E_3000001" in reasons
    assert len(rejects) == 3


def test_vocv4_root_and_real_root_variants(vocv4_corpus):
    voc, la = vocv4_corpus
    a = vocv4.read(voc, real_root=la)                          # LA/ itself
    b = vocv4.read(voc.parent, real_root=la.parent)            # folder holding voc.v4, folder holding LA
    assert [p.id for p in a[0]] == [p.id for p in b[0]] and len(a[0]) == 6


def test_vocv4_speakers_fall_back_to_asvspoof_protocols(vocv4_corpus):
    voc, la = vocv4_corpus
    (voc / "protocol.txt").unlink()
    cm = la / "ASVspoof2019_LA_cm_protocols"
    cm.mkdir()
    (cm / "ASVspoof2019.LA.cm.train.trn.txt").write_text("LA_0091 LA_T_1000001 - - bonafide\n")
    pairs, _ = vocv4.read(voc, real_root=la)
    spk = {p.id: p.speaker for p in pairs}
    assert spk["hifigan__LA_T_1000001"] == "LA_0091"
    assert spk["waveglow__LA_D_2000001"] == "unknown"


def test_vocv4_missing_roots_are_source_errors(vocv4_corpus, tmp_path):
    voc, la = vocv4_corpus
    with pytest.raises(SourceError, match="--real-root"):
        vocv4.read(voc)
    with pytest.raises(SourceError, match="not found"):
        vocv4.read(tmp_path / "nope", real_root=la)
    with pytest.raises(SourceError, match="ASVspoof2019_LA_train"):
        vocv4.read(voc, real_root=voc)  # a folder without the LA partitions
    with pytest.raises(SourceError, match="not found"):
        read_source("vocv4", tmp_path / "nope", real_root=la)


# ---------------------------------------------------------------- WaveFake


@pytest.fixture
def wavefake_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "WaveFake"
    gen = root / "generated_audio"
    for v in ("melgan", "melgan_large", "parallel_wavegan", "multi_band_melgan", "full_band_melgan"):
        _audio(gen / f"ljspeech_{v}" / "LJ001-0001_gen.wav", sr=22050)
    _audio(gen / "ljspeech_melgan" / "LJ001-0002_gen.wav", sr=22050)
    _audio(gen / "ljspeech_hifiGAN" / "LJ001-0001_generated.wav", sr=22050)
    _audio(gen / "ljspeech_waveglow" / "LJ001-0001.wav", sr=22050)
    _audio(gen / "ljspeech_waveglow" / "LJ050-0278.wav", sr=22050)  # its real is not in the LJSpeech copy
    _audio(gen / "jsut_multi_band_melgan" / "BASIC5000_0001_gen.wav", sr=24000)
    _audio(gen / "jsut_parallel_wavegan" / "BASIC5000_0001_gen.wav", sr=24000)
    _audio(gen / wavefake.TTS_FOLDER / "gen_0.wav", sr=22050)
    _audio(root / "LJSpeech-1.1" / "wavs" / "LJ001-0001.wav", sr=22050)
    _audio(root / "LJSpeech-1.1" / "wavs" / "LJ001-0002.wav", sr=22050)
    _audio(tmp_path / "corpora" / "jsut_ver1.1" / "basic5000" / "wav" / "BASIC5000_0001.wav", sr=48000)
    return root


def test_wavefake_pairs_all_suffixes_and_tts_skipped(wavefake_corpus, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="annotate.sources.wavefake"):
        pairs, rejects = wavefake.read(wavefake_corpus, real_root=tmp_path / "corpora")
    _check_common(pairs, "wavefake")
    got = _by_id(pairs)
    lj = ["melgan", "melgan_large", "parallel_wavegan", "multi_band_melgan", "full_band_melgan", "hifiGAN", "waveglow"]
    expected = {f"ljspeech_{v}__LJ001-0001" for v in lj} | {"ljspeech_melgan__LJ001-0002"}
    expected |= {"jsut_multi_band_melgan__BASIC5000_0001", "jsut_parallel_wavegan__BASIC5000_0001"}
    assert set(got) == expected
    for v in lj:  # _gen, _generated (hifiGAN) and no suffix (waveglow) all reach the same real
        p = got[f"ljspeech_{v}__LJ001-0001"]
        assert (p.utt_id, p.vocoder, p.speaker, p.split) == ("LJ001-0001", f"ljspeech_{v}", "LJ", None)
        assert p.real_path == str(wavefake_corpus / "LJSpeech-1.1" / "wavs" / "LJ001-0001.wav")
    j = got["jsut_parallel_wavegan__BASIC5000_0001"]
    assert (j.speaker, j.utt_id) == ("JSUT", "BASIC5000_0001")
    assert j.real_path.endswith("corpora/jsut_ver1.1/basic5000/wav/BASIC5000_0001.wav")
    # the full-TTS folder has no twins: skipped with a message, not paired and not rejected
    assert not any(wavefake.TTS_FOLDER in path for path in [p.spoof_path for p in pairs] + [r.path for r in rejects])
    assert any(wavefake.TTS_FOLDER in r.getMessage() and "no real twins" in r.getMessage() for r in caplog.records)
    assert [(r.id, r.reason) for r in rejects] == [
        ("ljspeech_waveglow__LJ050-0278",
         f"no real twin: expected {wavefake_corpus / 'LJSpeech-1.1' / 'wavs' / 'LJ050-0278.wav'}")]


def test_wavefake_suffix_stripping_is_exact():
    assert wavefake.real_stem("LJ001-0001_gen") == "LJ001-0001"
    assert wavefake.real_stem("LJ001-0001_generated") == "LJ001-0001"
    assert wavefake.real_stem("LJ001-0001") == "LJ001-0001"
    assert wavefake.real_stem("BASIC5000_0001_gen") == "BASIC5000_0001"
    assert wavefake.real_stem("LJ001-0001_genx") == "LJ001-0001_genx"
    assert wavefake.real_stem("LJ001-0001_gen_gen") == "LJ001-0001_gen"  # one suffix, never a loose match


def test_wavefake_missing_corpus_reals(wavefake_corpus, tmp_path, caplog):
    # JSUT not found anywhere: its folders are skipped with a message, LJSpeech pairs still come out
    with caplog.at_level(logging.WARNING, logger="annotate.sources.wavefake"):
        pairs, rejects = wavefake.read(wavefake_corpus / "generated_audio")
    assert pairs and all(p.speaker == "LJ" for p in pairs)
    assert sum("jsut_ver1.1/basic5000/wav not found" in r.getMessage() for r in caplog.records) == 2
    assert len(rejects) == 1
    # no reals at all: one-line SourceError
    bare = tmp_path / "bare"
    _audio(bare / "generated_audio" / "ljspeech_melgan" / "LJ001-0001_gen.wav")
    with pytest.raises(SourceError, match="--real-root"):
        wavefake.read(bare)
    with pytest.raises(SourceError, match="not found"):
        wavefake.read(tmp_path / "nope")


def test_wavefake_duplicate_id(wavefake_corpus):
    _audio(wavefake_corpus / "generated_audio" / "ljspeech_melgan" / "LJ001-0001_gen.flac", sr=22050)
    pairs, rejects = wavefake.read(wavefake_corpus)
    dup = [r for r in rejects if "duplicated id" in r.reason]
    assert [r.id for r in dup] == ["ljspeech_melgan__LJ001-0001"]
    assert dup[0].path.endswith("LJ001-0001_gen.wav")  # the .flac sorts first and is kept
    assert _by_id(pairs)["ljspeech_melgan__LJ001-0001"].spoof_path.endswith(".flac")


# ---------------------------------------------------------------- Codecfake


@pytest.fixture
def codecfake_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "Codecfake"
    label = root / "label"
    label.mkdir(parents=True)
    for n in ("p225_001", "F01_p225_001", "F02_p225_001", "SSB13650058", "F01_SSB13650058", "F06_SSB13650058"):
        _audio(root / "train" / f"{n}.wav")
    (label / "train.txt").write_text(
        "p225_001.wav real 0\nF01_p225_001.wav fake 1\nF02_p225_001.wav fake 2\nSSB13650058.wav real 0\n"
        "F01_SSB13650058.wav fake 1\nF06_SSB13650058.wav fake 6\nF03_p226_002.wav fake 3\n")
    for n in ("p227_003", "F04_p227_003", "F05_p999_001"):  # dev has no label file: pair by names
        _audio(root / "dev" / f"{n}.wav")
    for n in ("SSB00050001", "F01_SSB00050001"):
        _audio(root / "test" / "C1" / f"{n}.wav")
    (label / "C1.txt").write_text("SSB00050001.wav real 0\nF01_SSB00050001.wav fake 1\n")
    for n in ("p225_001", "F07_p225_001"):
        _audio(root / "test" / "C7" / f"{n}.wav")
        _audio(root / "C7" / f"{n}.wav")  # a second copy of C7 directly under the root
    _audio(root / "test" / "A1" / "alm_0001.wav")
    _audio(root / "test" / "A1" / "alm_real_0001.wav")
    (label / "A1.txt").write_text("alm_real_0001.wav real L1\nalm_0001.wav fake L1\n")
    return root


def test_codecfake_pairs(codecfake_corpus, caplog):
    with caplog.at_level(logging.WARNING, logger="annotate.sources.codecfake"):
        pairs, rejects = codecfake.read(codecfake_corpus.parent)  # the folder holding Codecfake/
    _check_common(pairs, "codecfake")
    got = _by_id(pairs)
    assert set(got) == {"F01__p225_001", "F02__p225_001", "F01__SSB13650058", "F06__SSB13650058",
                        "F04__p227_003", "F01__SSB00050001", "F07__p225_001"}
    p = got["F02__p225_001"]
    assert (p.utt_id, p.vocoder, p.speaker, p.split) == ("p225_001", "F02", "p225", "train")
    assert p.real_path == str(codecfake_corpus / "train" / "p225_001.wav")
    assert p.spoof_path == str(codecfake_corpus / "train" / "F02_p225_001.wav")
    assert (got["F06__SSB13650058"].speaker, got["F06__SSB13650058"].split) == ("SSB1365", "train")
    assert (got["F04__p227_003"].speaker, got["F04__p227_003"].split) == ("p227", "dev")
    c1 = got["F01__SSB00050001"]
    assert (c1.split, c1.speaker) == ("test", "SSB0005") and "/test/C1/" in c1.real_path
    assert got["F07__p225_001"].split == "test"

    reasons = {r.id: r.reason for r in rejects}
    assert reasons["F03__p226_002"].startswith("spoof file missing")
    assert reasons["F05__p999_001"] == f"no real twin: expected {codecfake_corpus / 'dev' / 'p999_001.wav'}"
    assert "duplicated id" in reasons["F07__p225_001"]  # C7 found twice
    assert len(rejects) == 3
    assert any("A1" in r.getMessage() and "skipping 1 fakes" in r.getMessage() for r in caplog.records)


def test_codecfake_speaker_of():
    assert codecfake.speaker_of("p225_001") == "p225"
    assert codecfake.speaker_of("SSB13650058") == "SSB1365"
    assert codecfake.speaker_of("LJ001-0001") == "unknown"


def test_codecfake_missing_root(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        codecfake.read(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no Codecfake split folders"):
        codecfake.read(tmp_path / "empty")


# ---------------------------------------------------------------- manifest


@pytest.fixture
def manifest_files(tmp_path: Path) -> Path:
    d = tmp_path / "mycorpus"
    for n in ("real/a", "real/b", "real/c", "fake/v1/a", "fake/v1/b", "fake/v2/a", "fake/v2/c"):
        _audio(d / f"{n}.wav")
    absolute = _audio(tmp_path / "elsewhere" / "fake_c.flac")
    (d / "manifest.csv").write_text(
        "real_path,spoof_path,vocoder,speaker,split\n"
        "real/a.wav,fake/v1/a.wav,v1,spk1,train\n"
        "real/b.wav,fake/v1/b.wav,v1,spk2,\n"
        "real/a.wav,fake/v2/a.wav,v2,spk1,val\n"
        f"real/c.wav,{absolute},v3,,test\n"
        "\n"
        "real/c.wav,fake/v2/missing.wav,v2,spk3,train\n"
        "real/zz.wav,fake/v2/c.wav,v2,spk3,train\n"
        "real/c.wav,fake/v2/c.wav,v2,spk3,holdout\n"
        "real/a.wav,fake/v1/b.wav,v1,spk1,train\n")
    return d


def test_manifest_csv(manifest_files):
    pairs, rejects = manifest.read(manifest_files / "manifest.csv")
    _check_common(pairs, "manifest")
    got = _by_id(pairs)
    assert set(got) == {"v1__a", "v1__b", "v2__a", "v3__c"}
    a = got["v1__a"]
    assert (a.utt_id, a.vocoder, a.speaker, a.split) == ("a", "v1", "spk1", "train")
    assert a.real_path == str(manifest_files / "real" / "a.wav")
    assert got["v1__b"].split is None
    assert got["v2__a"].split == "dev"
    assert (got["v3__c"].speaker, got["v3__c"].split) == ("unknown", "test")
    reasons = sorted(r.reason for r in rejects)
    assert len(rejects) == 4
    assert any(r.startswith("spoof file missing") for r in reasons)
    assert any(r.startswith("no real twin: expected ") and "real/zz.wav" in r for r in reasons)
    assert any("unknown split 'holdout'" in r for r in reasons)
    assert any(r.startswith("duplicated id") for r in reasons)  # v1__a twice; the first row is kept
    assert got["v1__a"].spoof_path.endswith("fake/v1/a.wav")


def test_manifest_tsv_folder_root_and_optional_columns(manifest_files):
    (manifest_files / "manifest.csv").unlink()
    (manifest_files / "manifest.tsv").write_text(
        "Speaker\tVocoder\tSpoof_Path\tReal_Path\tid\tutt_id\n"
        "s1\tv1\tfake/v1/a.wav\treal/a.wav\tmy-row-1\tutt_a\n"
        "s2\tv2\tfake/v2/c.wav\treal/c.wav\t\t\n")
    pairs, rejects = manifest.read(manifest_files)
    assert not rejects
    got = _by_id(pairs)
    assert set(got) == {"my-row-1", "v2__c"}
    assert (got["my-row-1"].utt_id, got["my-row-1"].speaker, got["my-row-1"].split) == ("utt_a", "s1", None)


def test_manifest_errors(manifest_files, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("real_path,spoof_path,split\nreal/a.wav,fake/v1/a.wav,train\n")
    with pytest.raises(SourceError, match="vocoder, speaker"):
        manifest.read(bad)
    with pytest.raises(SourceError, match="not found"):
        manifest.read(tmp_path / "nope.csv")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(SourceError, match="no manifest.csv"):
        manifest.read(tmp_path / "emptydir")
    with pytest.raises(SourceError, match="--root is required"):
        read_source("manifest", None)
