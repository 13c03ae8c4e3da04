"""The PartialSpoof reader on a tiny corpus in the real layout: segment labels at several resolutions (pickled dicts,
read without unpickling), the CM protocols, con_wav audio; the build's frame labels; an oracle scored end to end."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from annotate.sources import LabelledSpoof, SourceError, read_source
from annotate.sources.npydict import UnsafePickle, read_npy_dict
from annotate.sources.partialspoof import coarse_disagreement, spoof_bits

SR = 16000
RESOLUTIONS = (0.01, 0.02, 0.04, 0.16, 0.64)
# utterance -> (split, speaker, seconds, spoofed [start, end) spans in seconds); no span = bona fide
CORPUS = {
    "CON_T_0000000": ("train", "LA_0079", 1.23, [(0.30, 0.55)]),
    "CON_T_0000001": ("train", "LA_0080", 1.10, [(0.0, 0.12), (0.81, 1.10)]),
    "LA_T_1000001": ("train", "LA_0079", 1.05, []),
    "CON_D_0000000": ("dev", "LA_0081", 1.17, [(0.47, 0.48)]),  # one 10 ms segment
    "LA_D_1000001": ("dev", "LA_0081", 1.00, []),
    "CON_E_0000000": ("eval", "LA_0082", 1.31, [(0.20, 0.41), (0.66, 0.90)]),
    "CON_E_0000001": ("eval", "LA_0083", 1.08, [(0.50, 0.73)]),
    "LA_E_1000001": ("eval", "LA_0082", 1.12, []),
}


def truth_labels(seconds: float, spans, res: float, count=round) -> np.ndarray:
    """Spoofed flag per ``res`` segment: a segment is spoofed when it overlaps a span (the corpus's rule)."""
    n = max(1, int(count(seconds / res)))
    starts = np.arange(n) * res
    out = np.zeros(n, bool)
    for a, b in spans:
        out |= (starts < b - 1e-9) & (starts + res > a + 1e-9)
    return out


def corpus_values(spoofed: np.ndarray) -> np.ndarray:
    """The corpus's encoding: an array of '0'/'1' strings, '1' = bona fide."""
    return np.where(spoofed, "0", "1")


def make_corpus(root: Path, resolutions=RESOLUTIONS) -> Path:
    """PartialSpoof/database as unpacked from the official tarballs, for :data:`CORPUS`."""
    db = root / "PartialSpoof" / "database"
    rng = np.random.default_rng(0)
    protocols: dict[str, list[str]] = {}
    labels: dict[tuple[str, float], dict] = {}
    for utt, (split, spk, seconds, spans) in CORPUS.items():
        wav = db / split / "con_wav" / f"{utt}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(round(seconds * SR))) / SR
        x = 0.1 * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(wav, x.astype(np.float32), SR, subtype="PCM_16")
        key = "spoof" if spans else "bonafide"
        protocols.setdefault(split, []).append(f"{spk} {utt} - - {key}")
        for res in resolutions:  # 0.64 s: floor count (as the official lab_in_scale), others rounded
            count = np.floor if res == 0.64 else round
            labels.setdefault((split, res), {})[utt] = corpus_values(truth_labels(seconds, spans, res, count))
    proto_dir = db / "protocols" / "PartialSpoof_LA_cm_protocols"
    proto_dir.mkdir(parents=True)
    for split, lines in protocols.items():
        (proto_dir / f"PartialSpoof.LA.cm.{split}.trl.txt").write_text("\n".join(lines) + "\n")
    (db / "segment_labels").mkdir()
    for (split, res), d in labels.items():
        np.save(db / "segment_labels" / f"{split}_seglab_{res}.npy", d, allow_pickle=True)  # our own data: fine
    (db / "dev" / "dev.lst").write_text("CON_D_0000000\nLA_D_1000001\n")
    return db


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("ps"))


def evil_npy(path: Path, payload) -> Path:
    """An .npy with a valid object-array header and a pickle stream that runs ``payload`` when unpickled."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(pickle.dumps({"CON_T_0000000": payload}, protocol=2))
    return path


class _System:
    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


# ----------------------------------------------------------------------------------------------- reader


def test_reader_reads_the_real_layout(corpus):
    pairs, rejects = read_source("partialspoof", corpus)
    assert rejects == []
    assert {p.utt_id for p in pairs} == set(CORPUS)
    for p in pairs:
        split, spk, seconds, spans = CORPUS[p.utt_id]
        assert isinstance(p, LabelledSpoof) and p.real_path == "" and Path(p.spoof_path).is_file()
        assert p.split == {"eval": "test"}.get(split, split) and p.speaker == spk and p.source == "partialspoof"
        assert p.vocoder == ("partialspoof" if spans else "bonafide") and p.id == f"{p.vocoder}__{p.utt_id}"
        assert p.segment_seconds == 0.01  # the finest resolution present
        assert p.labels == "".join("1" if b else "0" for b in truth_labels(seconds, spans, 0.01))  # '1' = spoofed
    # PartialSpoof/ itself (above database/) is accepted as --root
    assert [p.id for p in read_source("partialspoof", corpus.parent)[0]] == [p.id for p in pairs]


def test_labels_at_every_resolution_agree(corpus):
    folder = corpus / "segment_labels"
    for split in ("train", "dev", "eval"):
        fine = {u: spoof_bits(v) for u, v in read_npy_dict(folder / f"{split}_seglab_0.01.npy").items()}
        assert set(fine) == {u for u, c in CORPUS.items() if c[0] == split}
        for res in RESOLUTIONS[1:]:
            coarse = read_npy_dict(folder / f"{split}_seglab_{res}.npy")
            for utt, bits in fine.items():
                c = spoof_bits(coarse[utt])
                assert coarse_disagreement(bits, 0.01, c, res) is None
                # the check can fail: flip one coarse segment
                c2 = c.copy()
                c2[0] = not c2[0]
                assert "segment 0 is" in coarse_disagreement(bits, 0.01, c2, res)
    # a spoofed 10 ms segment makes every coarser segment around it spoofed, nothing else
    d = spoof_bits(read_npy_dict(folder / "dev_seglab_0.16.npy")["CON_D_0000000"])
    assert np.flatnonzero(d).tolist() == [2]


def test_a_disagreeing_resolution_is_a_reject(tmp_path):
    db = make_corpus(tmp_path)
    path = db / "segment_labels" / "eval_seglab_0.04.npy"
    d = read_npy_dict(path)
    d["CON_E_0000001"] = d["CON_E_0000001"].copy()
    d["CON_E_0000001"][0] = "0"  # spoof at 0-40 ms, where the 10 ms labels say bona fide
    np.save(path, d, allow_pickle=True)
    pairs, rejects = read_source("partialspoof", db)
    assert len(pairs) == len(CORPUS) - 1
    (r,) = rejects
    assert r.id == "partialspoof__CON_E_0000001"
    assert "eval_seglab_0.04.npy vs eval_seglab_0.01.npy" in r.reason and "segment 0 is spoof" in r.reason


def test_bad_entries_are_rejects_and_the_rest_is_read(tmp_path):
    db = make_corpus(tmp_path)
    (db / "train" / "con_wav" / "CON_T_0000001.wav").unlink()  # listed, no audio
    sf.write(db / "train" / "con_wav" / "CON_T_0000009.wav", np.zeros(8000, np.float32), SR)  # audio, not listed
    proto = db / "protocols" / "PartialSpoof_LA_cm_protocols" / "PartialSpoof.LA.cm.eval.trl.txt"
    text = proto.read_text().replace("LA_0083 CON_E_0000001 - - spoof", "LA_0083 CON_E_0000001 - - bonafide")
    proto.write_text(text + "LA_0083 CON_E_0000002 - - spoof\nbroken line\n")
    sf.write(db / "eval" / "con_wav" / "CON_E_0000002.wav", np.zeros(8000, np.float32), SR)  # no labels
    path = db / "segment_labels" / "dev_seglab_0.01.npy"
    d = read_npy_dict(path)
    d["CON_D_0000000"] = np.array(["1", "x"] * 3)
    np.save(path, d, allow_pickle=True)
    pairs, rejects = read_source("partialspoof", db)
    reasons = {r.id: r.reason for r in rejects}
    assert "listed in PartialSpoof.LA.cm.train.trl.txt" in reasons["partialspoof__CON_T_0000001"]
    assert "not in the CM protocol" in reasons["CON_T_0000009"]
    assert "protocol key bonafide but" in reasons["bonafide__CON_E_0000001"]
    assert "no segment labels in eval_seglab_0.01.npy" in reasons["partialspoof__CON_E_0000002"]
    assert "label value 'x'" in reasons["partialspoof__CON_D_0000000"]
    assert "line 5: expected" in reasons["PartialSpoof.LA.cm.eval.trl.txt:5"]
    assert len(pairs) == len(CORPUS) - 3
    assert all(len(r.reason.splitlines()) == 1 for r in rejects)


def test_inverted_labels_and_missing_parts_are_one_line_errors(tmp_path):
    db = make_corpus(tmp_path)
    path = db / "segment_labels" / "train_seglab_0.02.npy"
    d = read_npy_dict(path)
    np.save(path, {u: np.where(v == "1", "0", "1") for u, v in d.items()}, allow_pickle=True)
    with pytest.raises(SourceError, match=r"train_seglab_0\.02\.npy: .* looks inverted"):
        read_source("partialspoof", db)
    for f in (db / "segment_labels").glob("train_*"):
        f.unlink()
    with pytest.raises(SourceError, match="no segment labels for train"):
        read_source("partialspoof", db)
    with pytest.raises(SourceError, match="no PartialSpoof split folders"):
        read_source("partialspoof", tmp_path)
    with pytest.raises(SourceError, match="--root is required"):
        read_source("partialspoof", None)


# ----------------------------------------------------------------------------------------------- no unpickling


@pytest.mark.parametrize("payload, needle", [
    (lambda flag: _System(f"touch {flag}"), "names posix.system"),
    (lambda flag: _Eval(f"open({str(flag)!r}, 'w')"), "names builtins.eval"),
])
def test_a_malicious_pickle_is_rejected_without_running(tmp_path, payload, needle):
    flag = tmp_path / "RAN"
    bad = evil_npy(tmp_path / "train_seglab_0.01.npy", payload(flag))
    with pytest.raises(UnsafePickle) as e:
        read_npy_dict(bad)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: ") and needle.split()[-1].split(".")[-1] in msg and len(msg.splitlines()) == 1
    assert not flag.exists()
    # through the reader: a one-line SourceError naming the file, and still nothing ran
    db = make_corpus(tmp_path / "c")
    target = db / "segment_labels" / "train_seglab_0.01.npy"
    target.write_bytes(bad.read_bytes())
    with pytest.raises(SourceError, match=r"train_seglab_0\.01\.npy: the pickle names .*refusing to unpickle"):
        read_source("partialspoof", db)
    assert not flag.exists()


class _Eval:
    def __init__(self, src: str):
        self.src = src

    def __reduce__(self):
        return (eval, (self.src,))


def test_other_streams_are_refused(tmp_path):
    hdr = {"descr": "|O", "fortran_order": False, "shape": ()}

    def npy(name: str, stream: bytes) -> Path:
        p = tmp_path / name
        with open(p, "wb") as f:
            np.lib.format.write_array_header_1_0(f, hdr)
            f.write(stream)
        return p

    # protocol 0 INST opcode (calls a class), an allowed-looking module with another name, a non-dict, a plain array
    inst = b"(i__main__\nThing\n(dp0\nb."
    other = pickle.dumps(np.dtype("U1"), protocol=2).replace(b"numpy\ndtype", b"numpy\nload\x00"[:-1])
    cases = {"inst.npy": (inst, "opcode INST"), "load.npy": (other, "names numpy.load"),
             "list.npy": (pickle.dumps(["0", "1"], protocol=2), "a pickled list")}
    for name, (stream, needle) in cases.items():
        with pytest.raises(UnsafePickle, match=needle):
            read_npy_dict(npy(name, stream))
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(UnsafePickle, match="not a pickled dict"):
        read_npy_dict(plain)
    trunc = tmp_path / "trunc.npy"
    np.save(trunc, {"a": np.array(["0", "1"])}, allow_pickle=True)
    trunc.write_bytes(trunc.read_bytes()[:-20])
    with pytest.raises(UnsafePickle, match="malformed|without STOP"):
        read_npy_dict(trunc)


def test_every_pickle_protocol_and_old_numpy_names_are_read(tmp_path):
    d = {"A": np.array(["1", "0", "0"]), "B": np.array([b"1", b"1"]), "C": np.array([1, 0], np.int64), "D": ["0", "1"]}
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
        p = tmp_path / f"p{proto}.npy"
        stream = pickle.dumps(np.asanyarray(d), protocol=proto)
        if proto < 4:  # as numpy 1.x wrote them
            stream = stream.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        with open(p, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
            f.write(stream)
        got = read_npy_dict(p)
        assert set(got) == set(d)
        for k, v in d.items():
            np.testing.assert_array_equal(got[k], np.asarray(v))
        assert spoof_bits(got["A"]).tolist() == [False, True, True] and spoof_bits(got["C"]).tolist() == [False, True]


# ----------------------------------------------------------------------------------------------- build + score


def test_sample_labels_follow_the_segments_and_refuse_a_length_mismatch():
    from annotate.core.audio import AudioError
    from annotate.pipeline.labelled import sample_labels, spans_of

    f = sample_labels("0110", 0.01, 4 * 160 + 30, SR)  # 30 samples past the last segment take its label
    assert f.tolist() == [False] * 160 + [True] * 320 + [False] * 190
    assert spans_of(f) == [[160, 480]] and spans_of(sample_labels("1", 0.01, 100, SR)) == [[0, 100]]
    assert sample_labels("01", 0.02, 600, SR).sum() == 600 - 320  # labels a little longer than the audio: clipped
    with pytest.raises(AudioError, match=r"4 segments of 0.01 s cover 0.040 s, the audio lasts 0.150 s"):
        sample_labels("0110", 0.01, 2400, SR)


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    from annotate.pipeline.build import BuildConfig, build

    out = tmp_path_factory.mktemp("psds") / "ds"
    build(BuildConfig(source="partialspoof", root=str(corpus), shard_size=4), out, progress=False)
    return out


def test_built_rows_carry_frame_labels_and_no_mask(built):
    from annotate.core.dataset import iter_rows, frame_cells
    from annotate.core.spectral import STFTConfig

    stft = STFTConfig()
    rows = list(iter_rows(built))
    assert {r["utt_id"] for r in rows} == set(CORPUS)
    for r in rows:
        split, _, seconds, spans = CORPUS[r["utt_id"]]
        n = r["num_samples"]
        assert n == int(round(seconds * SR)) and r["mask"] is None and r["diff"] is None and r["real_audio"] is None
        fl = np.asarray(r["frame_labels"])
        assert fl.shape == (stft.n_frames(n),) == (r["spoof_logmag"].shape[0],)
        # truth from the 10 ms labels: sample i is spoofed when its segment is; a frame when its cell holds one
        seg = truth_labels(seconds, spans, 0.01)
        flags = seg[np.minimum(np.arange(n) // 160, seg.size - 1)]
        edges = frame_cells(n, stft.hop_length, fl.size)
        expect = np.array([flags[a:b].mean() for a, b in zip(edges[:-1], edges[1:])], np.float32)
        np.testing.assert_allclose(fl, expect, atol=1e-6)
        assert r["spans"] == [[int(round(a * SR)), min(n, int(round(b * SR)))] for a, b in spans]
        assert (fl > 0).any() == bool(spans) and (r["vocoder"] == "bonafide") == (not spans)
    summary = json.loads((built / "summary.json").read_text())
    assert summary["rows_per_split"] == {"dev": 2, "test": 3, "train": 3} and summary["rejects"] == 0


def test_stats_show_and_card_handle_rows_without_masks(built, tmp_path):
    from annotate.hub.card import render_card
    from annotate.show import show, stats

    st = stats(built)
    assert st["rows"] == len(CORPUS) and np.isnan(st["mask_coverage"]) and np.isnan(st["align_score_mean"])
    png = show(built, "partialspoof__CON_E_0000000", tmp_path / "row.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    card = render_card(built, tmp_path / "card" / "README.md").read_text()
    assert "utterances with frame labels, no real twins" in card and "| test | partialspoof | 2 |" in card
    assert "| none |" in card and "withheld" not in card and "${" not in card


def test_oracle_1d_map_scores_frame_eer_0(built, tmp_path, capsys):
    from annotate.core.dataset import iter_rows
    from annotate.core.submission import SubmissionWriter
    from benchmark.cli import main

    sub = tmp_path / "oracle.parquet"
    with SubmissionWriter(sub, {"method": "oracle"}, ndim=1) as w:
        for r in iter_rows(built, "test", ["id", "frame_labels"]):
            w.write(r["id"], (np.asarray(r["frame_labels"]) > 0).astype(np.float32))
    out = tmp_path / "oracle.json"
    assert main(["score", str(sub), "--dataset", str(built), "--bootstrap", "100", "-o", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["track"] == "temporal"
    assert res["overall"]["EER"]["mean"] == 0.0 and res["overall"]["AUC"]["mean"] == 100.0
    assert res["overall"]["pooled EER"]["mean"] == 0.0 and res["overall"]["IoU@0.5"]["mean"] == 100.0
    assert res["per_vocoder"]["bonafide"]["AUC"]["n_undefined"] == 1
    # a T-F submission cannot be scored against masks these rows do not have: one line
    from annotate.core.submission import write_submission

    rows = list(iter_rows(built, "test", ["id", "num_samples"]))
    tf = tmp_path / "tf.parquet"
    write_submission(tf, [r["id"] for r in rows], [np.zeros((1 + r["num_samples"] // 128, 257), np.float32) for r in rows])
    capsys.readouterr()
    assert main(["score", str(tf), "--dataset", str(built), "--track", "tf", "--bootstrap", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no T-F masks" in err and "--track temporal" in err and len(err.splitlines()) == 1


def tiny_detector_cfg():
    """The smallest Wav2Vec2-AASIST that runs (as in tests/test_temporal.py)."""
    from dataclasses import replace

    from training.detector.config import preset

    cfg = preset("small")
    fe = replace(cfg.frontend, conv_layers=((8, 10, 5),) + ((8, 3, 2),) * 4 + ((8, 2, 2),) * 2, embed_dim=32,
                 num_heads=2, ff_dim=32, pos_conv_kernel=8, pos_conv_groups=2)
    be = replace(cfg.backend, res_channels=(1, 4, 4, 8, 8, 8, 8), proj_dim=24, gat_dim=16, hs_dims=(8, 8))
    return replace(cfg, frontend=fe, backend=be, crop=8000)


def test_detector_trains_and_gradcam_temporal_scores(built, tmp_path, capsys):
    from baselines.cli import main as explain
    from benchmark.cli import main
    from training.detector.config import TrainConfig
    from training.detector.data import index_split
    from training.detector.train import train

    items = index_split(built, "train")
    assert sorted((it.utt_id, it.label) for it in items) == sorted(
        (u, int(bool(c[3]))) for u, c in CORPUS.items() if c[0] == "train")
    det = train(built, tmp_path / "det", tiny_detector_cfg(),
                TrainConfig(steps=2, batch_size=2, lr=5e-4, seed=0, save_every=2, precise_bn_batches=1), progress=False)
    sub = tmp_path / "gc.parquet"
    assert explain(["--method", "gradcam", "--temporal", "--detector", str(det), "--dataset", str(built), "-o", str(sub),
                    "--no-progress"]) == 0
    assert main(["score", str(sub), "--dataset", str(built), "--bootstrap", "100"]) == 0
    assert "gradcam on ds/test" in capsys.readouterr().out
