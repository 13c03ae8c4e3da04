"""A detector-only subset of a built dataset: the rows of some vocoders, with just the columns the detector reads
(ids, vocoder, the two audio columns), as a dataset folder of its own. It makes separate "corpora" out of one
dataset for NC across corpora and the generalisation experiment (teachers on disjoint vocoder groups)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from annotate.core.dataset import open_shard, shard_paths, splits

DETECTOR_COLUMNS = ("id", "utt_id", "vocoder", "augment_copy", "real_audio", "spoof_audio", "frame_labels")
SUBSET_FILE = "subset.json"


def vocoder_subset(ds: str | Path, out: str | Path, vocoders: Sequence[str], *, split_names: Sequence[str] | None = None,
                   row_group_size: int = 64) -> Path:
    """Write ``out/data/<shard>.parquet`` with the rows of ``ds`` whose vocoder is in ``vocoders`` (every split,
    or ``split_names``), shard names kept, and ``out/subset.json`` saying what was kept. Shards left empty are not
    written. The schema's dataset metadata is dropped (the columns are a subset, not the dataset format)."""
    ds, out = Path(ds), Path(out)
    wanted = list(split_names) if split_names is not None else splits(ds)
    paths = [p for s in wanted for p in shard_paths(ds, s)]
    if not paths:
        raise FileNotFoundError(f"no {'/'.join(wanted) or 'dataset'} shards in {ds / 'data'}")
    present = set()
    for p in paths:
        present |= set(open_shard(p).read(columns=["vocoder"]).column("vocoder").unique().to_pylist())
    unknown = sorted(set(vocoders) - present)
    if unknown:
        raise ValueError(f"{ds}: no rows of vocoder(s) {unknown}; it has {sorted(present)}")
    (out / "data").mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for p in paths:
        names = open_shard(p).schema_arrow.names
        t = open_shard(p).read(columns=[c for c in DETECTOR_COLUMNS if c in names])
        t = t.filter(pc.is_in(t.column("vocoder"), value_set=pa.array(list(vocoders)))).replace_schema_metadata(None)
        if t.num_rows:
            pq.write_table(t, out / "data" / p.name, row_group_size=row_group_size)
        split = p.name.split("-")[0]
        counts[split] = counts.get(split, 0) + t.num_rows
    (out / SUBSET_FILE).write_text(json.dumps({"source": str(ds), "vocoders": list(vocoders), "rows": counts}, indent=2))
    return out
