"""File digests: the one place that hashes a file's bytes (weights against published hashes, dataset files
for the decoded-image cache key and split records), so every record means the same thing by "sha256"."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20  # read 1 MiB at a time: weights files are GBs, never read whole into memory


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    """Hex digest of the file's bytes with `algo` (any hashlib name; md5 only to match published prefixes)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    return file_digest(path, "sha256")
