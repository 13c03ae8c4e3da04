"""The build pipeline: corpus pairs → aligned, masked Parquet rows (build, align, splits, jobs), and the tools
that make or extend corpora (resynth and its vocoders, partial spoofs)."""
