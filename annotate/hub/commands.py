"""The ``annotate card`` and ``annotate publish`` subcommands (arguments here; the Hub code is imported when a
command runs)."""
from __future__ import annotations

import argparse
import sys

from ..core.commands import Command


def _common(p) -> None:
    p.add_argument("--pretty-name", help="title of the card (default: the source template's)")
    p.add_argument("--license", help="Hub licence id overriding the template's (e.g. cc-by-4.0, other)")
    p.add_argument("--template", help="card template (Markdown with YAML header) instead of annotate/hub/datacards/{source}.md")
    p.add_argument("--no-figure", action="store_true", help="skip the example-mask figures")


def _card_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset")
    p.add_argument("-o", "--output", help="card path (default DS/README.md); figures go next to it")
    p.add_argument("--repo-id", help="ORG/NAME used in the card's loading example")
    _common(p)


def _publish_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset")
    p.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repo")
    p.add_argument("--private", action="store_true", help="create the repo private (applies when it is created)")
    p.add_argument("--token", default=None, help="Hub token with write access (default: HF_TOKEN or the saved login)")
    p.add_argument("--endpoint", default=None, help="Hub endpoint (default: HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--dry-run", metavar="DIR", help="write the exact repo tree to DIR and upload nothing")
    p.add_argument("--withhold-test-masks", action="store_true",
                   help="publish the test split without mask/diff/real_audio (config 'benchmark'); the masks go to --key")
    p.add_argument("--key", metavar="KEYFILE", help="private Parquet (id, mask, diff) for `benchmark score --key`")
    p.add_argument("--commit-message", help="message of the final commit")
    p.add_argument("--max-files-per-commit", type=int, default=50, help="data files per commit (default 50)")
    _common(p)


def _run_card(a: argparse.Namespace) -> int:
    from .card import render_card

    path = render_card(a.dataset, a.output, repo_id=a.repo_id, pretty_name=a.pretty_name, license=a.license,
                       template=a.template, figure=not a.no_figure)
    print(f"wrote {path}" + ("" if a.no_figure else f" and its figures in {path.parent}"))
    return 0


def _run_publish(a: argparse.Namespace) -> int:
    from .publish import PublishError, publish

    if a.max_files_per_commit < 1:
        raise PublishError(f"--max-files-per-commit {a.max_files_per_commit}: must be >= 1")
    if a.key and not a.withhold_test_masks:
        raise PublishError("--key is only used with --withhold-test-masks")
    r = publish(a.dataset, a.repo_id, dry_run=a.dry_run, withhold=a.withhold_test_masks, key=a.key, token=a.token,
                private=a.private, endpoint=a.endpoint, pretty_name=a.pretty_name, license=a.license,
                template=a.template, figure=not a.no_figure, commit_message=a.commit_message,
                max_files=a.max_files_per_commit, log=lambda m: print(m, file=sys.stderr))
    if r["key"]:
        print(f"private key: {r['key']} ({r['key_rows']} test rows with mask and diff) — keep it out of the repo")
    if r["dry_run"]:
        print(f"dry run: wrote {len(r['files'])} files ({r['bytes'] / 1e6:.1f} MB) to {r['tree']}; nothing uploaded")
    else:
        print(f"published {r['url']}: {len(r['uploaded'])} file(s) uploaded in {len(r['commits'])} commit(s), "
              f"{r['unchanged']} unchanged, {len(r['deleted'])} stale removed")
    return 0


CARD = Command("write the Hub data card (README.md + figures) of a built dataset", _card_arguments, _run_card,
               description="Fill the source's template (annotate/hub/datacards/) from the build: counts, hours, mask "
                           "coverage, alignment statistics, rejects, every build parameter, example masks, citations, licence.")
PUBLISH = Command("upload a built dataset to the Hugging Face Hub (or write the repo tree with --dry-run)", _publish_arguments,
                  _run_publish,
                  description="Create the dataset repo and upload card, data and figures through huggingface_hub. "
                              "Re-running resumes an interrupted upload (unchanged files are skipped). HF_ENDPOINT is respected.")
