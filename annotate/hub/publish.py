"""`annotate card` and `annotate publish`: the Hub repo tree of a built dataset, and its upload.

The tree is ``README.md`` (the card), ``data/{split}-{i:05d}-of-{n:05d}.parquet`` and the card's figures.
``--dry-run DIR`` writes exactly that tree; otherwise it is staged (hard links) under ``DS/.publish`` and
uploaded with huggingface_hub in batched commits, data first and the card last, skipping files the repo
already holds with the same hash — so a re-run after an interrupted upload only sends what is missing,
and stale shards of an earlier version are deleted with the final commit.

``--withhold-test-masks``: the test shards are rewritten without ``mask``/``diff``/``real_audio`` (own features, own
config ``benchmark`` in the card) and a private key Parquet (``id``, ``mask``, ``diff``) is written for
``benchmark score --key``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .card import (FIGURE_NAME, KEY_COLUMNS, ROW_FIGURE_NAME, WITHHELD_COLUMNS, CardError, check_complete, render_card,
                   split_features, template_warning, without_withheld)
from ..core.dataset import META_KEY, build_config, open_shard

KEY_FORMAT = "vocmask-key/1"
TREE_ENTRIES = {"README.md", "data", FIGURE_NAME, ROW_FIGURE_NAME}
STAGING = ".publish"


class PublishError(ValueError):
    """A publish that cannot proceed (bad input, Hub/network error); one line for the user, exit 2."""


# ----------------------------------------------------------------------------------------------- the tree


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (no copy of big shards); copy when linking is impossible."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _with_vocmask_meta(schema: pa.Schema, src_meta: dict | None, extra: dict) -> pa.Schema:
    vm = {}
    if src_meta and META_KEY in src_meta:
        vm = json.loads(src_meta[META_KEY])
    vm.update(extra)
    return schema.with_metadata({**(schema.metadata or {}), META_KEY: json.dumps(vm, sort_keys=True).encode()})


def _copy_columns(srcs: list[Path], dst: Path, schema: pa.Schema) -> int:
    """Write ``schema``'s columns of the shards ``srcs`` (in order) to ``dst``, row group by row group and
    atomically; returns the number of rows."""
    tmp = dst.with_name(dst.name + ".tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
            for src in srcs:
                pf = open_shard(src)
                for g in range(pf.num_row_groups):
                    t = pf.read_row_group(g, columns=schema.names)
                    cols = [t.column(n) for n in schema.names]
                    cols = [c if c.type == f.type else c.cast(f.type) for c, f in zip(cols, schema)]
                    w.write_table(pa.Table.from_arrays(cols, schema=schema))
                    rows += t.num_rows
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def write_public_test_shards(paths: list[Path], out_data: Path, feats) -> list[Path]:
    """Test shards without ``mask``/``diff``/``real_audio`` (nothing the masks can be rebuilt from): the public
    features, every other column as built."""
    pub = without_withheld(feats)
    out = []
    for p in sorted(paths):
        schema = _with_vocmask_meta(pub.arrow_schema, open_shard(p).schema_arrow.metadata, {"withheld": list(WITHHELD_COLUMNS)})
        dst = out_data / p.name
        _copy_columns([p], dst, schema)
        out.append(dst)
    return out


def write_key(paths: list[Path], key: Path, feats, meta: dict) -> int:
    """The private key: ``id``, ``mask``, ``diff`` of every test row (Array2D, time first); returns rows."""
    from datasets import Features, Value

    kf = Features({"id": Value("string"), **{c: feats[c] for c in KEY_COLUMNS if c in feats}})
    schema = _with_vocmask_meta(kf.arrow_schema, None, {"format": KEY_FORMAT, **meta})
    key.parent.mkdir(parents=True, exist_ok=True)
    return _copy_columns(sorted(paths), key, schema)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _prepare_tree_dir(out: Path, ds: Path) -> None:
    if out.resolve() == ds.resolve():
        raise PublishError(f"{out} is the dataset itself: give --dry-run another folder")
    if out.exists():
        extra = sorted(p.name for p in out.iterdir() if p.name not in TREE_ENTRIES)
        if extra:
            raise PublishError(f"{out} holds other files ({', '.join(extra[:5])}): give --dry-run an empty or new folder")
        shutil.rmtree(out / "data", ignore_errors=True)
    (out / "data").mkdir(parents=True, exist_ok=True)


@dataclass
class Tree:
    """A staged repo tree: its folder, files relative to it, and the key written alongside (if any)."""

    root: Path
    files: list[str] = field(default_factory=list)
    key: Path | None = None
    key_rows: int = 0
    warning: str | None = None

    @property
    def bytes(self) -> int:
        return sum((self.root / f).stat().st_size for f in self.files)


def stage_tree(ds: str | Path, out: str | Path, *, repo_id: str | None = None, withhold: bool = False,
               key: str | Path | None = None, pretty_name: str | None = None, license: str | None = None,
               template: str | Path | None = None, figure: bool = True) -> Tree:
    """Write the exact repo tree (card, data, figures) to ``out``; with ``withhold``, also the key file."""
    ds, out = Path(ds), Path(out)
    cfg = build_config(ds)
    try:
        shards = check_complete(ds)
    except CardError as e:
        raise PublishError(str(e)) from None
    if withhold:
        if key is None:
            raise PublishError("--withhold-test-masks needs --key KEYFILE: where to write the private masks")
        if "test" not in shards:
            raise PublishError(f"{ds} has no test split to withhold (splits: {', '.join(sorted(shards))})")
        key = Path(key)
        if _inside(key, out) or _inside(key, ds / "data"):
            raise PublishError(f"--key {key} lies inside the public tree or the dataset's data/: put it somewhere private")
    _prepare_tree_dir(out, ds)
    feats = split_features(ds)
    tree = Tree(out, warning=template_warning(cfg.get("source", "manifest"), template))
    for split, paths in sorted(shards.items()):
        if withhold and split == "test":
            written = write_public_test_shards(paths, out / "data", feats["test"])
        else:
            written = []
            for p in sorted(paths):
                _link_or_copy(p, out / "data" / p.name)
                written.append(out / "data" / p.name)
        tree.files += [f"data/{p.name}" for p in written]
    if withhold:
        meta = {"split": "test", "repo_id": repo_id, "dataset_version": cfg.get("version"), "source": cfg.get("source")}
        tree.key = key
        tree.key_rows = write_key(shards["test"], key, feats["test"], meta)
        n_test = sum(open_shard(p).metadata.num_rows for p in shards["test"])
        if tree.key_rows != n_test:
            raise PublishError(f"key {key} holds {tree.key_rows} rows but the test split has {n_test}")
    card = render_card(ds, out / "README.md", repo_id=repo_id, withheld=withhold, pretty_name=pretty_name,
                       license=license, template=template, figure=figure)
    tree.files.append(card.name)
    tree.files += [n for n in (FIGURE_NAME, ROW_FIGURE_NAME) if figure and (out / n).exists()]
    return tree


# ----------------------------------------------------------------------------------------------- upload


def file_hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file in one streaming pass: the Hub's LFS and git identities."""
    size = path.stat().st_size
    h256, h1 = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h256.update(chunk)
            h1.update(chunk)
    return h256.hexdigest(), h1.hexdigest()


def _same(local: Path, remote) -> bool:
    """Whether the repo already holds ``local`` (LFS/Xet files by sha256, regular files by git blob id)."""
    if remote is None or getattr(remote, "size", None) != local.stat().st_size:
        return False
    sha256, sha1 = file_hashes(local)
    lfs = getattr(remote, "lfs", None)
    return (lfs is not None and lfs.sha256 == sha256) or remote.blob_id == sha1


@contextmanager
def hub_errors(endpoint: str, repo_id: str):
    """Turn Hub/network exceptions into one-line :class:`PublishError` messages with what to do."""
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    resume = "re-run the same command to resume (files already uploaded are skipped)"
    try:
        yield
    except HFValidationError as e:
        raise PublishError(f"invalid --repo-id {repo_id!r}: {str(e).splitlines()[0]}") from None
    except PublishError:
        raise
    except ValueError as e:  # e.g. the Hub's YAML check of README.md
        msg = " ".join(str(e).split())[:300]
        raise PublishError(f"the Hub refused the upload: {msg}") from None
    except LocalTokenNotFoundError:
        raise PublishError("no Hugging Face token: pass --token, set HF_TOKEN or run `hf auth login`") from None
    except OfflineModeIsEnabled:
        raise PublishError("HF_HUB_OFFLINE is set: unset it to upload (or use --dry-run DIR)") from None
    except HfHubHTTPError as e:
        code = e.response.status_code if getattr(e, "response", None) is not None else None
        first = (str(e).strip().splitlines() or ["?"])[0][:200]
        hint = {401: "the token was refused: pass a valid --token or set HF_TOKEN",
                403: f"no write access to {repo_id}: use a write token of a member of its owner",
                404: f"{repo_id} or the endpoint {endpoint} was not found: check --repo-id and HF_ENDPOINT"}.get(code, resume)
        raise PublishError(f"Hub error{f' HTTP {code}' if code else ''} at {endpoint}: {first} — {hint}") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # local files, not the network
    except (OSError, *_transport_errors()) as e:
        raise PublishError(f"cannot reach the Hub at {endpoint} ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else 'no detail'}); "
                           f"check the network or HF_ENDPOINT, then {resume}") from None


def _transport_errors() -> tuple:
    try:
        import httpx2

        return (httpx2.HTTPError,)
    except ImportError:  # older huggingface_hub: requests
        import requests

        return (requests.exceptions.RequestException,)


def _batches(files: list[tuple[str, Path]], max_files: int, max_bytes: int) -> list[list[tuple[str, Path]]]:
    out: list[list[tuple[str, Path]]] = []
    cur: list[tuple[str, Path]] = []
    size = 0
    for rel, p in files:
        n = p.stat().st_size
        if cur and (len(cur) >= max_files or size + n > max_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append((rel, p))
        size += n
    if cur:
        out.append(cur)
    return out


def open_repo(repo_id: str, *, token: str | None = None, private: bool = False, endpoint: str | None = None):
    """``(api, url, endpoint)`` after creating the dataset repo if needed (checks network and token early)."""
    from huggingface_hub import HfApi

    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors(endpoint, repo_id):
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    return api, str(url), endpoint


def upload_tree(tree: Tree, repo_id: str, *, token: str | None = None, private: bool = False,
                endpoint: str | None = None, commit_message: str | None = None, max_files: int = 50,
                max_bytes: int = 4 << 30, log=print, repo=None) -> dict:
    """Create the dataset repo (if needed) and upload what differs with ``HfApi.upload_folder``: data in commits
    of at most ``max_files`` files / ``max_bytes``, so a broken upload resumes where it stopped, then the card
    with the deletion of stale shards.

    ``repo``: an ``open_repo`` result to reuse."""
    from huggingface_hub.hf_api import RepoFile

    api, url, endpoint = repo or open_repo(repo_id, token=token, private=private, endpoint=endpoint)
    local = {rel: tree.root / rel for rel in tree.files}
    with hub_errors(endpoint, repo_id):
        remote = {f.path: f for f in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True) if isinstance(f, RepoFile)}
    todo = [(rel, p) for rel, p in sorted(local.items()) if not _same(p, remote.get(rel))]
    stale = sorted(r for r in remote if r.startswith("data/") and r not in local)
    data = [(rel, p) for rel, p in todo if rel.startswith("data/")]
    last = [rel for rel, _ in todo if not rel.startswith("data/")]

    def upload(files: list[str], message: str, delete: list[str] | None = None) -> str:
        with hub_errors(endpoint, repo_id):
            info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=tree.root, allow_patterns=files,
                                     delete_patterns=delete or None, commit_message=message)
        return info.oid

    commits = []
    batches = _batches(data, max_files, max_bytes)
    for i, batch in enumerate(batches, 1):
        log(f"commit {i}/{len(batches) + 1}: {len(batch)} data file(s), {sum(p.stat().st_size for _, p in batch) / 1e6:.1f} MB")
        commits.append(upload([rel for rel, _ in batch], f"Upload data ({i}/{len(batches)})"))
    if last or stale:
        version = build_config_version(tree)
        commits.append(upload(last, commit_message or f"Publish vocmask dataset card{f' ({version})' if version else ''}", stale))
    return {"repo_id": repo_id, "url": url, "uploaded": [rel for rel, _ in todo], "unchanged": len(local) - len(todo),
            "deleted": stale, "commits": commits}


def build_config_version(tree: Tree) -> str | None:
    """The vocmask version recorded in the first shard's metadata (for the commit message)."""
    for rel in tree.files:
        if rel.startswith("data/"):
            meta = open_shard(tree.root / rel).schema_arrow.metadata or {}
            if META_KEY in meta:
                return (json.loads(meta[META_KEY]).get("build") or {}).get("version")
    return None


def publish(ds: str | Path, repo_id: str, *, dry_run: str | Path | None = None, withhold: bool = False,
            key: str | Path | None = None, token: str | None = None, private: bool = False, endpoint: str | None = None,
            pretty_name: str | None = None, license: str | None = None, template: str | Path | None = None,
            figure: bool = True, commit_message: str | None = None, max_files: int = 50, log=print) -> dict:
    """Stage the tree (``dry_run`` folder, else ``DS/.publish``) and upload it unless ``dry_run``."""
    from huggingface_hub.utils import validate_repo_id
    from huggingface_hub.errors import HFValidationError

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PublishError(f"invalid --repo-id {repo_id!r}: {str(e).splitlines()[0]}") from None
    if "/" not in repo_id:
        raise PublishError(f"--repo-id {repo_id!r} must be ORG/NAME (or USER/NAME)")
    ds = Path(ds)
    if not (ds / "build.json").exists():
        raise PublishError(f"{ds} is not a vocmask dataset (no build.json): run `annotate build` first")
    if withhold and key is None:
        raise PublishError("--withhold-test-masks needs --key KEYFILE: where to write the private masks")
    try:
        check_complete(ds)
    except CardError as e:
        raise PublishError(str(e)) from None
    out = Path(dry_run) if dry_run else ds / STAGING
    repo = None if dry_run else open_repo(repo_id, token=token, private=private, endpoint=endpoint)  # fail fast
    tree = stage_tree(ds, out, repo_id=repo_id, withhold=withhold, key=key, pretty_name=pretty_name,
                      license=license, template=template, figure=figure)
    if tree.warning:
        log(f"warning: {tree.warning}")
    result = {"tree": str(out), "files": tree.files, "bytes": tree.bytes, "key": str(tree.key) if tree.key else None,
              "key_rows": tree.key_rows}
    if dry_run:
        return {**result, "dry_run": True}
    try:
        result.update(upload_tree(tree, repo_id, commit_message=commit_message, max_files=max_files, log=log, repo=repo))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {**result, "dry_run": False}
