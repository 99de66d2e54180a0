"""Shard files: uncompressed .npz written atomically and byte-for-byte reproducibly, read back
as memory maps so that one sample costs one sample's bytes.

A shard is a zip of .npy members (np.load reads it as usual); stored members are contiguous
in the file, so ``open_shard`` maps each array in place instead of reading the whole shard.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..files import replaced_atomically, write_text_atomically

#: Marks a file being written; a leftover one is an interrupted write, removed on resume.
TMP_SUFFIX = ".partial"

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def write_shard(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> str:
    """Write arrays as an uncompressed npz via a temporary file and os.replace; returns the
    sha256 of the file. Same arrays -> same bytes (fixed member dates, sorted names)."""
    path = Path(path)
    with replaced_atomically(path, TMP_SUFFIX) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for name in sorted(arrays):
                info = zipfile.ZipInfo(name + ".npy", date_time=_FIXED_DATE)
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
        with open(tmp, "rb") as written:   # on disk before the rename: a crash leaves no empty shard behind
            os.fsync(written.fileno())
    return sha256_file(path)


def open_shard(path: str | os.PathLike) -> dict[str, np.memmap]:
    """Every array of a shard written by write_shard, memory-mapped read-only."""
    path = Path(path)
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: member {info.filename} is compressed; shards must be stored")
            raw.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", raw.read(4))
            raw.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(raw)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(raw) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(raw))
            arrays[info.filename[:-4]] = np.memmap(path, dtype=dtype, mode="r", offset=raw.tell(),
                                                   shape=shape, order="F" if fortran else "C")
    return arrays


def readable_shard(path: str | os.PathLike) -> bool:
    """Whether ``open_shard`` can read the file (a resumed build re-renders one it cannot)."""
    try:
        open_shard(path)
    except (zipfile.BadZipFile, ValueError, OSError):
        return False
    return True


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | os.PathLike, value: dict) -> None:
    """Write JSON (sorted keys, indented) atomically."""
    write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n", TMP_SUFFIX)
