"""Resolve a source's weights file to a local path: cache first, then one download attempt, never a retry loop.

The cache layout is ours, not the HF hub's, so a user on an offline cluster can place a file by hand:
`<MEDTRANSFER_CACHE_DIR>/weights/<source>/<encoder>/<filename>`. Every error names that exact path and
where to get the file. A published hash (full SHA-256, the SHA-256 prefix torchvision/OpenMMLab put in file
names, or the md5 prefix MoCo/MAE print in their READMEs) is checked on every resolve: a truncated or
swapped file is caught before its tensors are trusted. A download is written beside its cache path and moved
there (one os.replace) only after the caller's check passed: a file that does not fit is never cached.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from medtransfer import settings
from medtransfer.errors import WeightsError
from medtransfer.hashing import file_digest, sha256_file

HF_ENDPOINT = "https://huggingface.co"
Check = Callable[[Path, Path], object]  # (file written in full, its cache path) -> raises if it may not go there


def file_url(spec) -> str | None:
    if spec.get("url"):
        return spec["url"]
    if spec.get("hf_repo"):
        return f"{HF_ENDPOINT}/{spec['hf_repo']}/resolve/{spec.get('revision') or 'main'}/{spec['filename']}"
    return spec.get("page")


def weights_dir(source: str, encoder: str) -> Path:
    return settings.cache_dir() / "weights" / source / encoder


def cache_path(source: str, encoder: str, spec) -> Path:
    name = spec.get("filename") or Path(urlparse(spec["url"]).path).name
    return weights_dir(source, encoder) / name


def verify(path: Path, spec, source: str) -> str:
    """Check every hash the source publishes; returns the file's sha256 (recorded in results.json)."""
    sha = sha256_file(path)
    checks = [("sha256", sha, spec.get("sha256"), len(str(spec.get("sha256") or ""))),
              ("sha256 prefix", sha, spec.get("sha256_prefix"), len(str(spec.get("sha256_prefix") or "")))]
    if spec.get("md5_prefix"):
        checks.append(("md5 prefix", file_digest(path, "md5"), spec["md5_prefix"], len(spec["md5_prefix"])))
    for what, got, expected, n in checks:
        if expected and got[:n] != str(expected).lower():
            raise WeightsError(f"{path}: {what} {got[:n]} != published {expected} for pretrain={source} "
                               f"(corrupt, truncated or the wrong file); delete it and re-fetch")
    return sha


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}


def _reachable(url: str, timeout: float = 3.0) -> bool:
    host = urlparse(url).hostname
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve(source: str, encoder: str, spec, check: Check | None = None) -> Path:
    """Local path of the weights; downloads at most once. Manual sources (Google Drive / Box folders,
    files that need a converter first) are never downloaded: the error says where to get them. A download
    lands in the cache only once `check(file, cache path)` passed (default: the published hashes)."""
    path = cache_path(source, encoder, spec)
    url = file_url(spec)
    if not path.is_file():
        if spec.get("download") == "manual":
            raise WeightsError(f"pretrain={source} encoder={encoder}: no direct download; get it from {url}"
                               f"{' (' + spec['note'] + ')' if spec.get('note') else ''} and place it at {path}")
        how = f"download {url} and place it at {path}"
        if _offline():
            raise WeightsError(f"pretrain={source} encoder={encoder}: weights not cached and HF_HUB_OFFLINE=1; {how}")
        if not _reachable(url):
            raise WeightsError(f"pretrain={source} encoder={encoder}: {urlparse(url).hostname} unreachable; {how}")
        try:
            _download(url, spec, path, check or (lambda tmp, dest: verify(tmp, spec, source)))
        except WeightsError as e:
            raise WeightsError(f"pretrain={source} encoder={encoder}: the download of {url} was not cached at "
                               f"{path}: {e}") from None
    return path


def place(tmp: Path, path: Path, check: Check) -> None:
    """Move a fully written file to `path` (same filesystem, one os.replace) only after `check` passed on it;
    a file that fails is deleted, so the cache never holds something a later resolve would trust."""
    try:
        check(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _download(url: str, spec, path: Path, check: Check) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if spec.get("hf_repo"):
        from huggingface_hub import hf_hub_download

        got = hf_hub_download(spec["hf_repo"], spec["filename"], revision=spec.get("revision"),
                              local_dir=path.parent / ".hf")
        place(Path(got), path, check)
        return
    import urllib.request

    tmp = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            while block := r.read(1 << 20):
                f.write(block)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    place(tmp, path, check)
