"""vocmask.annotate: parallel real/vocoded corpora -> ground-truth artifact masks as a Parquet dataset."""
from importlib.metadata import PackageNotFoundError, version as _version

try:  # pyproject.toml is the one source of the package version
    __version__ = _version("vocmask")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# the dataset format: what a build writes (columns, alignment, masks); build.json records it as "version",
# and a build with another format version is not resumed into an existing folder
FORMAT_VERSION = "0.3.0"
