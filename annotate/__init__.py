"""vocmask.annotate: parallel real/vocoded corpora -> ground-truth artifact masks as a Parquet dataset."""
__version__ = "0.3.0"
