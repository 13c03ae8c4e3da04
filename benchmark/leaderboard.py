"""Leaderboard: rank result JSONs by mean IoU (ties: GDice, then name), chance baselines always included.

Missing chance rows are computed from the dataset (seeded, see :mod:`benchmark.chance`). Renders
Markdown, CSV (mean, CI low, CI high per metric) or one self-contained static HTML page. Results of the
temporal track (:mod:`benchmark.temporal`, ``"track": "temporal"``) are ranked in a table of their own,
by frame AUC, with the temporal chance rows.
"""
from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from .chance import CHANCE_METHODS, chance_name, chance_result
from .score import ALL_METRICS, RANKING_METRIC, RESULT_FORMAT, ScoreError, fmt_cell, load_truth
from .stats import BootstrapConfig

FORMATS = ("md", "csv", "html")


def load_results(folder: str | Path) -> list[dict]:
    """Every result JSON under ``folder`` (files of another format are skipped; broken JSON is an error)."""
    root = Path(folder)
    if not root.is_dir():
        raise ScoreError(f"{root}: not a folder — pass the folder holding `benchmark score -o` result files")
    out = []
    for p in sorted(root.rglob("*.json")):
        try:
            r = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ScoreError(f"{p}: invalid JSON ({e.msg} at line {e.lineno}) — re-run `benchmark score` for it") from None
        if isinstance(r, dict) and r.get("format") == RESULT_FORMAT and "overall" in r:
            r["_file"] = str(p)
            out.append(r)
    return out


def track_of(result: dict) -> str:
    """``temporal`` for temporal-track results, ``tf`` (time-frequency) otherwise."""
    return result.get("track") or "tf"


def add_chance(
    results: list[dict], dataset: str | Path | None = None, split: str | None = None, seed: int = 0,
    boot: BootstrapConfig = BootstrapConfig(), key: str | Path | None = None,
) -> list[dict]:
    """``results`` plus a computed row for every chance baseline that has no result file yet, per track
    present (the T-F track when no temporal result is there)."""
    temporal = [r for r in results if track_of(r) == "temporal"]
    if temporal:
        results = [r for r in results if track_of(r) != "temporal"] + _add_temporal_chance(temporal, dataset, split, seed, boot)
        if all(track_of(r) == "temporal" for r in results):
            return results
    have = {r["name"] for r in results if r.get("kind") == "chance" and track_of(r) == "tf"}
    missing = [m for m in CHANCE_METHODS if chance_name(m) not in have]
    if not missing:
        return results
    tf = [r for r in results if track_of(r) == "tf"] or results
    dataset = dataset or next((r.get("dataset") for r in tf if r.get("dataset")), None)
    split = split or next((r.get("split") for r in tf if r.get("split")), None) or "test"
    if dataset is None:
        raise ScoreError(f"chance baselines {', '.join(missing)} have no result file and no dataset is known: pass --dataset DS")
    truth = load_truth(dataset, split, key)
    return results + [chance_result(m, dataset, split, seed, boot, truth=truth) for m in missing]


def _add_temporal_chance(results: list[dict], dataset, split, seed: int, boot: BootstrapConfig) -> list[dict]:
    from .temporal import load_temporal_truth, temporal_chance_result

    have = {r["name"] for r in results if r.get("kind") == "chance"}
    missing = [m for m in CHANCE_METHODS if chance_name(m) not in have]
    if not missing:
        return results
    dataset = dataset or next((r.get("dataset") for r in results if r.get("dataset")), None)
    split = split or next((r.get("split") for r in results if r.get("split")), None) or "test"
    if dataset is None:
        raise ScoreError(f"temporal chance baselines {', '.join(missing)} have no result file and no dataset is known: pass --dataset DS")
    truth = load_temporal_truth(dataset, split)
    return results + [temporal_chance_result(m, dataset, split, seed, boot, truth=truth) for m in missing]


def _mean(r: dict, metric: str) -> float:
    v = r["overall"].get(metric, {}).get("mean")
    return float("-inf") if v is None else v


def rank(results: list[dict], metric: str = RANKING_METRIC) -> list[dict]:
    """Results sorted best first by ``metric`` (then GDice, then name); error rates (EERs) rank lowest first."""
    from .temporal import LOWER_IS_BETTER

    if metric in LOWER_IS_BETTER:
        return sorted(results, key=lambda r: (_mean(r, metric) if _mean(r, metric) > float("-inf") else float("inf"), r["name"]))
    return sorted(results, key=lambda r: (-_mean(r, metric), -_mean(r, "GDice"), r["name"]))


def _metrics(results: list[dict]) -> list[str]:
    from .temporal import TEMPORAL_METRICS

    present = {m for r in results for m in r["overall"]}
    return [m for m in dict.fromkeys((*ALL_METRICS, *TEMPORAL_METRICS)) if m in present]  # the tracks share AUC


def _mixed(results: list[dict]) -> str | None:
    combos = {(Path(r.get("dataset", "?")).name, r.get("split"), r.get("truth")) for r in results}
    if len(combos) > 1:
        return "warning: results come from different datasets/splits/truths: " + "; ".join(sorted(map(str, combos)))
    return None


def render_md(results: list[dict], metric: str = RANKING_METRIC) -> str:
    """Markdown table: mean [95% CI] in percent per metric, ranked by ``metric``."""
    ranked, metrics = rank(results, metric), _metrics(results)
    head = ["rank", "method", "kind", "n"] + metrics
    lines = [
        f"Ranked by mean {metric} (percent; [95% bootstrap CI]); chance rows are baselines.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for k, r in enumerate(ranked, 1):
        cells = [str(k), r["name"], r.get("kind", ""), str(r.get("n_utterances", ""))]
        cells += [fmt_cell(r["overall"].get(m)) for m in metrics]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    warn = _mixed(results)
    return "\n".join(lines + ([f"\n{warn}"] if warn else [])) + "\n"


def render_csv(results: list[dict], metric: str = RANKING_METRIC) -> str:
    """CSV: rank, method, kind, n, then ``{metric}``, ``{metric}_lo``, ``{metric}_hi`` per metric."""
    ranked, metrics = rank(results, metric), _metrics(results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "method", "kind", "n", "dataset", "split"] + [f"{m}{s}" for m in metrics for s in ("", "_lo", "_hi")])
    for k, r in enumerate(ranked, 1):
        row = [k, r["name"], r.get("kind", ""), r.get("n_utterances", ""), Path(r.get("dataset", "")).name, r.get("split", "")]
        for m in metrics:
            s = r["overall"].get(m) or {}
            lo, hi = s.get("ci", [None, None])
            row += [_num(s.get("mean")), _num(lo), _num(hi)]
        w.writerow(row)
    return buf.getvalue()


def _num(v) -> str:
    return "" if v is None else f"{v:.4f}"


CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f0f0f0}
td.m,th.m{text-align:left}tr.chance{color:#777;font-style:italic}.ci{color:#888;font-size:85%}"""


def render_html(results: list[dict], metric: str = RANKING_METRIC, title: str = "vocmask leaderboard") -> str:
    """One static, self-contained HTML page (inline CSS, no scripts or external files)."""
    ranked, metrics = rank(results, metric), _metrics(results)
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in metrics)
    rows = []
    for k, r in enumerate(ranked, 1):
        cells = []
        for m in metrics:
            s = r["overall"].get(m)
            if not s or s.get("mean") is None:
                cells.append("<td>-</td>")
            else:
                lo, hi = s["ci"]
                ci = "" if lo is None or hi is None else f" <span class=ci>[{lo:.1f}, {hi:.1f}]</span>"  # --bootstrap 0
                cells.append(f"<td>{s['mean']:.1f}{ci}</td>")
        cls = ' class="chance"' if r.get("kind") == "chance" else ""
        rows.append(
            f"<tr{cls}><td>{k}</td><td class=m>{e(r['name'])}</td><td class=m>{e(str(r.get('kind', '')))}</td>"
            f"<td>{r.get('n_utterances', '')}</td>{''.join(cells)}</tr>"
        )
    datasets = sorted({f"{Path(r.get('dataset', '?')).name}/{r.get('split', '?')}" for r in results})
    warn = _mixed(results)
    return (
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>{e(title)}</title><style>{CSS}</style></head>\n"
        f"<body><h1>{e(title)}</h1><p>Dataset: {e(', '.join(datasets))}. Ranked by mean {e(metric)}; "
        "values in percent with 95% bootstrap confidence intervals; italic rows are chance baselines.</p>\n"
        + (f"<p><strong>{e(warn)}</strong></p>\n" if warn else "")
        + f"<table><thead><tr><th>rank</th><th class=m>method</th><th class=m>kind</th><th>n</th>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table></body></html>\n"
    )


def render(results: list[dict], fmt: str, metric: str = RANKING_METRIC) -> str:
    """Dispatch to the renderer of ``fmt`` (md, csv or html); each track gets its own table (the temporal
    track ranked by its own ranking metric unless ``metric`` is one of its metrics)."""
    from .temporal import RANKING_METRIC as TEMPORAL_RANKING
    from .temporal import TEMPORAL_METRICS

    if fmt not in FORMATS:
        raise ScoreError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    renderer = {"md": render_md, "csv": render_csv, "html": render_html}[fmt]
    tracks = {t: [r for r in results if track_of(r) == t] for t in ("tf", "temporal")}
    if not tracks["temporal"]:
        return renderer(results, metric)
    t_metric = metric if metric in TEMPORAL_METRICS else TEMPORAL_RANKING
    if not tracks["tf"]:
        return renderer(tracks["temporal"], t_metric) if fmt != "md" else "## Temporal track\n\n" + render_md(tracks["temporal"], t_metric)
    if fmt == "md":
        return ("## Time-frequency track\n\n" + render_md(tracks["tf"], metric) + "\n## Temporal track\n\n"
                + render_md(tracks["temporal"], t_metric))
    if fmt == "csv":
        return render_csv(tracks["tf"], metric) + "\n" + render_csv(tracks["temporal"], t_metric)
    tf_page = render_html(tracks["tf"], metric, title="vocmask leaderboard: time-frequency track")
    t_page = render_html(tracks["temporal"], t_metric, title="vocmask leaderboard: temporal track")
    body = t_page.split("<body>", 1)[1].rsplit("</body>", 1)[0]
    return tf_page.replace("</body></html>", body + "</body></html>")
