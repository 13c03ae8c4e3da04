"""UncachedFile: what lands on disk is exactly what was written, direct or not, whatever the chunking."""
from __future__ import annotations

import errno
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotate import storage
from annotate.storage import UncachedFile


def _write_chunks(path, chunks, buffer_size):
    with UncachedFile(path, buffer_size=buffer_size) as f:
        for c in chunks:
            assert f.write(c) == len(c)
        assert f.tell() == sum(len(c) for c in chunks)
        return f


@pytest.mark.parametrize("sizes", [[0], [1], [4095], [4096], [4097], [10, 5000, 3, 9000, 4096 * 3 + 7],
                                   [20000] * 5, [3 * 4096]])
def test_uncached_file_bytes_match(tmp_path, sizes):
    rng = np.random.default_rng(len(sizes) * 1000 + sum(sizes))
    chunks = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]
    # a buffer of two blocks makes every case above cross buffer drains and leave a padded tail
    _write_chunks(tmp_path / "x.bin", chunks, buffer_size=2 * UncachedFile.BLOCK)
    assert (tmp_path / "x.bin").read_bytes() == b"".join(chunks)


def test_uncached_file_goes_buffered_when_direct_writes_fail(tmp_path, monkeypatch):
    """A filesystem that accepts O_DIRECT at open but refuses the writes (EINVAL): same bytes, buffered."""
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this OS: UncachedFile is always buffered here")
    import fcntl

    real_write = os.write
    refused = []

    def write(fd, data):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(storage.os, "write", write)
    data = np.random.default_rng(1).integers(0, 256, 3 * 4096 + 11, dtype=np.uint8).tobytes()
    f = _write_chunks(tmp_path / "y.bin", [data], buffer_size=4096)
    assert not f.direct
    assert (tmp_path / "y.bin").read_bytes() == data
    assert refused in ([], [4096])  # at most the first write was tried directly ([] where open refused O_DIRECT)


def test_shard_written_through_uncached_file_reads_back(tmp_path):
    """A Parquet file written through the sink is the same table pyarrow writes to a path itself."""
    rng = np.random.default_rng(0)
    table = pa.table({"x": rng.standard_normal(50_000).astype(np.float32), "i": np.arange(50_000)})
    with UncachedFile(tmp_path / "a.parquet", buffer_size=64 << 10) as f:
        pq.write_table(table, f)
    pq.write_table(table, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert pq.read_table(tmp_path / "a.parquet").equals(table)


def test_uncached_file_background_write_error_reaches_the_caller(tmp_path, monkeypatch):
    """A write that fails on the helper thread (a full disk) raises in the writer's next call, not silently."""
    real_write = os.write
    calls = []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(storage.os, "write", write)
    f = UncachedFile(tmp_path / "z.bin", buffer_size=4096)
    with pytest.raises(OSError, match="No space"):
        for _ in range(8):
            f.write(bytes(4096))
        f.close()
    f.close()  # closing again after the error is harmless
