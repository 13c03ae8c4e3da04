"""Data card and Hub publishing: the dry-run tree loads with `datasets`, the card YAML parses, withheld test
masks stay out of the public tree and score identically through the key file, and the upload path runs
against a LOCAL fake Hub (a tiny http.server on 127.0.0.1 speaking the few API calls used) — no real upload."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import string
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from annotate.hub.card import BENCHMARK_CONFIG, PLACEHOLDERS, collect_stats, flatten, load_template, templates_dir
from annotate.core.dataset import array2d, build_config, iter_rows, read_table, shard_paths, splits
from annotate.hub.publish import PublishError, publish, stage_tree

SOURCES = ("librisevoc", "vocv4", "wavefake", "codecfake", "partialspoof", "manifest", "demo")


# ----------------------------------------------------------------------------------------------- fake Hub


class FakeHub(ThreadingHTTPServer):
    """Just enough of the Hub API for HfApi.create_repo / list_repo_tree / create_commit (regular uploads)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.auth: set[str] = set()
        self.commits: list[dict] = []
        self.validated: list[str] = []
        self.refuse_commit: int | None = None  # 1-based index of a commit to refuse (a broken upload)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, code: int, obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        hub = self.server
        hub.requests.append(("GET", self.path))
        hub.auth.add(self.headers.get("authorization", ""))
        m = re.match(r"^/api/datasets/([^/]+/[^/]+)/tree/([^/?]+)", self.path)
        if not m or m.group(1) not in hub.repos:
            return self._send(404, {"error": "not found"})
        files = hub.repos[m.group(1)]
        self._send(200, [{"type": "file", "path": p, "size": len(b),
                          "oid": hashlib.sha1(f"blob {len(b)}\0".encode() + b).hexdigest()} for p, b in sorted(files.items())])

    def do_POST(self):
        hub = self.server
        hub.requests.append(("POST", self.path))
        hub.auth.add(self.headers.get("authorization", ""))
        body = self._body()
        if self.path == "/api/repos/create":
            d = json.loads(body)
            rid = f"{d['organization']}/{d['name']}" if d.get("organization") else d["name"]
            if rid in hub.repos:
                return self._send(409, {"error": "You already created this dataset repo", "url": f"{hub.url}/datasets/{rid}"})
            hub.repos[rid] = {}
            return self._send(200, {"url": f"{hub.url}/datasets/{rid}", "name": rid})
        if self.path == "/api/validate-yaml":  # the Hub checks a README's YAML header before committing it
            import yaml

            content = json.loads(body)["content"]
            m = re.match(r"^---\n(.*?)\n---\n", content, flags=re.S)
            ok = m is not None and isinstance(yaml.safe_load(m.group(1)), dict)
            hub.validated.append(content)
            return self._send(200 if ok else 400, {"errors": [] if ok else [{"message": "bad YAML"}], "warnings": []})
        m = re.match(r"^/api/datasets/([^/]+/[^/]+)/(preupload|commit)/([^/?]+)", self.path)
        if not m or m.group(1) not in hub.repos:
            return self._send(404, {"error": f"unexpected {self.path}"})
        rid, what = m.group(1), m.group(2)
        if what == "preupload":
            files = json.loads(body)["files"]
            return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        lines = [json.loads(x) for x in body.splitlines() if x.strip()]
        n = len(hub.commits) + 1
        if hub.refuse_commit == n:
            hub.refuse_commit = None
            return self._send(422, {"error": "commit refused by the test server"})
        added, deleted = [], []
        for line in lines:
            if line["key"] == "file":
                hub.repos[rid][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                added.append(line["value"]["path"])
            elif line["key"] == "deletedFile":
                hub.repos[rid].pop(line["value"]["path"], None)
                deleted.append(line["value"]["path"])
            elif line["key"] != "header":
                return self._send(400, {"error": f"unsupported commit line {line['key']}"})
        hub.commits.append({"repo": rid, "added": added, "deleted": deleted, "summary": lines[0]["value"]["summary"]})
        self._send(200, {"commitUrl": f"{hub.url}/datasets/{rid}/commit/{n:040x}", "commitOid": f"{n:040x}"})


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------- templates


def test_every_template_parses_and_uses_known_placeholders():
    for source in SOURCES:
        meta, body = load_template(source)
        assert meta["license"] and meta["pretty_name"], source
        assert "audio-classification" in meta["task_categories"], source
        used = set(string.Template(body).get_identifiers())
        assert used <= set(PLACEHOLDERS), (source, used - set(PLACEHOLDERS))
        assert "Known limitations" in body and {"build_config", "split_table", "figure", "rejects"} <= used, source
        if source == "partialspoof":  # frame labels only (no real twins): no mask method, no alignment
            assert not {"alignment", "method", "mask_percent"} & used and "frame_labels" in body
            continue
        assert {"paper_citation", "alignment", "method"} <= used and "Grinberg" in body, source
    assert load_template("librisevoc")[0]["license"] == "cc-by-sa-4.0"
    assert "Sun, Chengzhe" in load_template("librisevoc")[1]
    assert sorted(p.stem for p in templates_dir().glob("*.md")) == sorted(SOURCES)


# ----------------------------------------------------------------------------------------------- card + dry run


def test_dry_run_tree_loads_every_split_and_card_parses(demo_ds, tmp_path, capsys):
    from datasets import Array2D, load_dataset
    from huggingface_hub import DatasetCard

    from annotate.cli import main
    from annotate.show import stats

    out = tmp_path / "tree"
    rc = main(["publish", str(demo_ds), "--repo-id", "vocmask/demo", "--dry-run", str(out)])
    assert rc == 0 and "nothing uploaded" in capsys.readouterr().out
    names = set(tree_bytes(out))
    shards = {f"data/{p.name}" for p in shard_paths(demo_ds)}
    assert names == shards | {"README.md", "mask_examples.png", "example_row.png"}

    card = DatasetCard.load(out / "README.md")
    d = card.data
    assert d.license == "mit" and "audio-classification" in d.task_categories and "audio-deepfake-detection" in d.tags
    assert d.size_categories == ["n<1K"] and d.pretty_name
    split_names = splits(demo_ds)
    assert d.configs == [{"config_name": "default", "default": True,
                          "data_files": [{"split": s, "path": f"data/{s}-*"} for s in ("train", "dev", "test")]}]
    assert set(split_names) == {"train", "dev", "test"}
    feat_names = [f["name"] for f in d.dataset_info["features"]]
    assert {"mask", "diff", "spoof_logmag", "spoof_audio"} <= set(feat_names)
    text = (out / "README.md").read_text()
    assert "](mask_examples.png)" in text and "](example_row.png)" in text and "$" not in text.split("---", 2)[2].replace("$$", "")
    cfg = build_config(demo_ds)
    for k, v in flatten(cfg):
        assert f"`{k}`" in text, k
    assert cfg["root"] not in text  # the builder's local path is never published
    assert "arXiv:2506.03425" in text

    ds = load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert sorted(ds) == sorted(split_names)
    truth = read_table(demo_ds, columns=["id", "split", "mask"])
    for s in split_names:
        assert ds[s].num_rows == sum(1 for x in truth.column("split").to_pylist() if x == s)
        assert ds[s].features["mask"] == Array2D(shape=(None, 257), dtype="uint8")
        assert ds[s].features["spoof_logmag"] == Array2D(shape=(None, 257), dtype="float32")
    row = ds["test"].with_format("numpy")[0]
    assert row["mask"].ndim == 2 and row["mask"].shape[1] == 257 and row["spoof_logmag"].shape == row["mask"].shape
    k = truth.column("id").to_pylist().index(row["id"])
    np.testing.assert_array_equal(row["mask"].astype(np.uint8), array2d(truth.column("mask")[k]))

    # the card's numbers are the dataset's: coverage from the streaming reader equals annotate.show.stats
    st = stats(demo_ds)
    groups = collect_stats(demo_ds)["groups"]
    for r in st["by_split_vocoder"]:
        g = groups[(r["split"], r["vocoder"])]
        assert g.rows == r["rows"] and np.mean(g.coverage) == pytest.approx(r["mask_coverage"])
        assert f"| {r['split']} | {r['vocoder']} | {r['rows']} |" in text


def test_card_cli_and_errors(demo_ds, tmp_path, capsys):
    from annotate.cli import main

    out = tmp_path / "card" / "README.md"
    assert main(["card", str(demo_ds), "-o", str(out), "--no-figure", "--license", "cc-by-4.0", "--pretty-name", "My masks"]) == 0
    text = out.read_text()
    assert "license: cc-by-4.0" in text and "# My masks" in text and not (out.parent / "mask_examples.png").exists()
    assert main(["card", str(demo_ds), "-o", str(out), "--no-figure", "--template", str(tmp_path / "nope.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no card template" in err
    # the dataset folder itself is never a dry-run target, and a folder with other files is refused
    with pytest.raises(PublishError, match="dataset itself"):
        publish(demo_ds, "a/b", dry_run=demo_ds, figure=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(PublishError, match="other files"):
        publish(demo_ds, "a/b", dry_run=tmp_path / "busy", figure=False)
    assert main(["publish", str(demo_ds), "--repo-id", "not a repo id", "--dry-run", str(tmp_path / "t")]) == 2
    assert "invalid --repo-id" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- withheld masks


def test_withheld_test_masks_key_scores_like_the_full_dataset(demo_ds, tmp_path):
    from datasets import load_dataset

    from benchmark.score import ScoreError, score_submission
    from benchmark.stats import BootstrapConfig
    from benchmark.submission import write_submission

    out, key = tmp_path / "tree", tmp_path / "private" / "key.parquet"
    with pytest.raises(PublishError, match="inside the public tree"):
        stage_tree(demo_ds, out, withhold=True, key=out / "key.parquet", figure=False)
    tree = stage_tree(demo_ds, out, repo_id="vocmask/demo", withhold=True, key=key, figure=False)
    test_rows = list(iter_rows(demo_ds, "test", ["id", "mask", "diff"]))
    assert tree.key_rows == len(test_rows) > 0

    for p in (out / "data").glob("*.parquet"):
        names = pq.read_schema(p).names
        if p.name.startswith("test-"):
            assert "mask" not in names and "diff" not in names and "spoof_logmag" in names
        else:
            assert "mask" in names and "diff" in names
    kt = pq.read_table(key)
    assert kt.column("id").to_pylist() == [r["id"] for r in test_rows]
    for i, r in enumerate(test_rows):
        np.testing.assert_array_equal(array2d(kt.column("mask")[i]), r["mask"])
        np.testing.assert_array_equal(array2d(kt.column("diff")[i]), r["diff"])

    cache = str(tmp_path / "cache")
    pub = load_dataset(str(out), cache_dir=cache)
    assert sorted(pub) == ["dev", "train"] and pub["train"].features["mask"].shape == (None, 257)
    bench = load_dataset(str(out), BENCHMARK_CONFIG, cache_dir=cache)
    assert list(bench) == ["test"] and "mask" not in bench["test"].features and bench["test"].num_rows == len(test_rows)

    # hidden-label scoring: the public tree + key scores exactly like the full dataset
    rng = np.random.default_rng(0)
    ids = [r["id"] for r in test_rows]
    maps = [rng.random(r["mask"].shape, dtype=np.float32) for r in test_rows]
    write_submission(tmp_path / "sub.parquet", ids, maps, {"method": "uniform"})
    boot = BootstrapConfig(resamples=50, seed=0)
    full = score_submission(tmp_path / "sub.parquet", demo_ds, boot=boot)
    keyed = score_submission(tmp_path / "sub.parquet", out, key=key, boot=boot)
    assert keyed["truth"] == "key file key.parquet" and full["truth"] == "dataset masks"
    assert keyed["overall"] == full["overall"] and keyed["per_vocoder"] == full["per_vocoder"]
    with pytest.raises(ScoreError, match="withholds its masks"):
        score_submission(tmp_path / "sub.parquet", out, boot=boot)
    assert "withheld" in (out / "README.md").read_text()


# ----------------------------------------------------------------------------------------------- upload


def test_upload_to_local_endpoint_resumes_and_cleans(demo_ds, tmp_path, monkeypatch):
    expected = tree_bytes(stage_tree(demo_ds, tmp_path / "expected", repo_id="org/masks", figure=False).root)
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)  # respected without --endpoint
        # an upload broken at its second commit reports one clear error ...
        hub.refuse_commit = 2
        with pytest.raises(PublishError, match="HTTP 422"):
            publish(demo_ds, "org/masks", token="hf_test", figure=False, max_files=1, log=lambda m: None)
        first = set(hub.commits[0]["added"])
        assert len(first) == 1 and hub.repos["org/masks"].keys() == first
        # ... and a re-run sends only what is missing, card last
        r = publish(demo_ds, "org/masks", token="hf_test", figure=False, max_files=1, log=lambda m: None)
        assert set(r["uploaded"]) == set(expected) - first and r["unchanged"] == len(first)
        assert hub.commits[-1]["added"] == ["README.md"]
        assert hub.repos["org/masks"] == expected
        assert all(not c["added"] or not set(c["added"]) & first for c in hub.commits[1:])
        assert not (demo_ds / ".publish").exists()
        # nothing to do when the repo is up to date
        n = len(hub.commits)
        r = publish(demo_ds, "org/masks", token="hf_test", figure=False, log=lambda m: None)
        assert r["uploaded"] == [] and len(hub.commits) == n
        # a stale shard of an earlier build is deleted with the card commit
        hub.repos["org/masks"]["data/train-00000-of-00009.parquet"] = b"old"
        r = publish(demo_ds, "org/masks", token="hf_test", figure=False, log=lambda m: None)
        assert r["deleted"] == ["data/train-00000-of-00009.parquet"] and hub.repos["org/masks"] == expected
        assert hub.auth == {"Bearer hf_test"}
        assert hub.validated and hub.validated[-1] == expected["README.md"].decode()
        used = {(m, re.sub(r"org/masks", "R", p.split("?")[0])) for m, p in hub.requests}
        assert used == {("POST", "/api/repos/create"), ("GET", "/api/datasets/R/tree/main"), ("POST", "/api/validate-yaml"),
                        ("POST", "/api/datasets/R/preupload/main"), ("POST", "/api/datasets/R/commit/main")}


def test_network_error_is_one_line(demo_ds, tmp_path, capsys):
    from annotate.cli import main

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more
    rc = main(["publish", str(demo_ds), "--repo-id", "org/masks", "--token", "hf_x", "--endpoint", f"http://127.0.0.1:{port}", "--no-figure"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert err.startswith("annotate publish: error: cannot reach the Hub at http://127.0.0.1:") and "re-run" in err
    assert not (demo_ds / ".publish").exists()
