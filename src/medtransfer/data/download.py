"""Fetch a public dataset into the layout the registry expects — or say, in one line, how to do it by hand.

Why so strict: jobs often run on offline compute nodes, where a download that hangs or retries wastes a
whole allocation. So there is exactly one attempt per file with a timeout, and any failure is a
`DataError` that names the URL and the exact folder to put the data in. Checksums are pinned where they
could be established (see each dataset's PROVENANCE.md); where not (``sha256=None``) the unpacked
contents are checked instead (file counts).

Usage: ``python -m medtransfer.data.download kvasir_seg [DEST]`` (DEST defaults to
``$MEDTRANSFER_DATA_ROOT/<folder>``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

from medtransfer.errors import ConfigError, DataError, choices_msg

TIMEOUT_S = 60


@dataclass(frozen=True)
class Remote:
    url: str
    sha256: str | None  # None: not established; contents are checked after unpacking instead
    dest: str | None = None  # for plain files: path relative to the dataset folder
    archive: str | None = None  # "zip" | "rar": unpacked, then `rename` maps its folders to ours
    rename: tuple[tuple[str, str], ...] = ()
    note: str = ""


_MEDICO = (
    "https://raw.githubusercontent.com/DebeshJha/2020-MediaEval-Medico-polyp-segmentation/"
    "d594c08b7f3a1cc40ef878284b5fc29de822bf18/kvasir-seg-train-val/"
)

SOURCES: dict[str, tuple[Remote, ...]] = {
    "kvasir_seg": (
        Remote(
            "https://datasets.simula.no/downloads/kvasir-seg.zip",
            # recorded by the torch_em library; the zip itself could not be checked here (PROVENANCE.md)
            sha256="03b30e21d584e04facf49397a2576738fd626815771afbbf788f74a7153478f7",
            archive="zip",
            rename=(("images", "images"), ("masks", "masks")),
        ),
        # the official 880/120 lists; identical git blobs to ../shared/data/kvasir_seg/splits (checked)
        Remote(
            _MEDICO + "train.txt",
            "49992c7c6c80abf02032050d4ae754236da3ba1041f609659ad0043ff6d1795c",
            dest="splits/train.txt",
        ),
        Remote(
            _MEDICO + "val.txt",
            "d9b48bd3d980324edb39df97764fdbb5489b2583f088fb49c659b76f6d20876b",
            dest="splits/val.txt",
        ),
    ),
    "cvc_clinicdb": (
        Remote(
            "https://www.dropbox.com/s/p5qe9eotetjnbmq/CVC-ClinicDB.rar?dl=1",
            sha256=None,
            archive="rar",
            rename=(("Original", "images"), ("Ground Truth", "masks")),
            note="no published checksum; verified by 612 frames + 612 masks after unpacking",
        ),
    ),
}
EXPECTED_PAIRS = {"kvasir_seg": 1000, "cvc_clinicdb": 612}


def _fail(url: str, dest: Path, why: str) -> DataError:
    return DataError(
        f"cannot download {url} ({why}); download it by hand and place the dataset at {dest} "
        f"(images/ and masks/ inside)"
    )


def _fetch(remote: Remote, to: Path, dest: Path) -> None:
    """One attempt, streamed, hashed on the fly; never retried."""
    h = hashlib.sha256()
    try:
        with urlopen(remote.url, timeout=TIMEOUT_S) as r, open(to, "wb") as f:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                h.update(chunk)
                f.write(chunk)
    except Exception as e:
        raise _fail(remote.url, dest, f"{type(e).__name__}: {' '.join(str(e).split())[:160]}") from e
    if remote.sha256 and h.hexdigest() != remote.sha256:
        raise _fail(remote.url, dest, f"sha256 {h.hexdigest()} != expected {remote.sha256}")


def _unpack(archive: Path, kind: str, into: Path, url: str, dest: Path) -> None:
    if kind == "zip":
        try:
            with zipfile.ZipFile(archive) as z:
                for m in z.namelist():  # no absolute paths / .. escapes
                    if m.startswith("/") or ".." in Path(m).parts:
                        raise DataError(f"{url}: unsafe path {m!r} in archive")
                z.extractall(into)
        except zipfile.BadZipFile as e:
            raise _fail(url, dest, f"not a zip file: {e}") from e
        return
    for tool in (["unrar", "x", "-idq"], ["7z", "x", "-y"], ["bsdtar", "-xf"]):
        if shutil.which(tool[0]):
            args = [*tool, str(archive)] + ([f"-o{into}"] if tool[0] == "7z" else [])
            cwd = into if tool[0] != "7z" else None
            if subprocess.run(args, check=False, cwd=cwd, capture_output=True).returncode == 0:
                return
    raise DataError(
        f"{archive}: cannot unpack .{kind} (install unrar, 7z or bsdtar, or unpack it by hand) "
        f"and place the dataset at {dest} (images/ and masks/ inside)"
    )


def _find_dir(top: Path, name: str) -> Path | None:
    hits = sorted((p for p in top.rglob("*") if p.is_dir() and p.name == name), key=lambda p: len(p.parts))
    return hits[0] if hits else None


def _place(name: str, remote: Remote, unpacked: Path, staging: Path, url: str, dest: Path) -> None:
    for src_name, ours in remote.rename:
        src = _find_dir(unpacked, src_name)
        if src is None:
            raise _fail(url, dest, f"archive has no {src_name}/ folder")
        shutil.move(str(src), str(staging / ours))


def _check_contents(name: str, staging: Path, dest: Path) -> None:
    n = EXPECTED_PAIRS.get(name)
    if n is None:
        return
    counts = {d: sum(1 for p in (staging / d).iterdir() if p.is_file()) for d in ("images", "masks")}
    if any(c != n for c in counts.values()):
        raise DataError(
            f"{staging}: expected {n} images and {n} masks, found {counts['images']} and "
            f"{counts['masks']}; place a complete copy at {dest}"
        )


def download(name: str, dest: str | Path | None = None) -> Path:
    """Fetch ``name`` into ``dest`` (default: the data root's folder for it); returns ``dest``."""
    from medtransfer import settings
    from medtransfer.data.datasets import DATASETS

    if name not in SOURCES:
        raise ConfigError(choices_msg("dataset to download", name, SOURCES))
    if dest is None:
        base = settings.data_root(required=False)
        if base is None:
            raise ConfigError(f"{settings.DATA_ROOT} is not set; set it or pass a destination folder")
        dest = base / DATASETS[name].folder
    dest = Path(dest).expanduser().resolve()
    if (dest / "images").is_dir() and (dest / "masks").is_dir():
        return dest  # already there; the cache key catches changed files
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-download-", dir=dest.parent))
    try:
        for remote in SOURCES[name]:
            fd, tmp = tempfile.mkstemp(dir=staging, prefix=".part-")
            os.close(fd)
            tmp = Path(tmp)
            _fetch(remote, tmp, dest)
            if remote.archive:
                unpacked = staging / ".unpacked"
                unpacked.mkdir()
                _unpack(tmp, remote.archive, unpacked, remote.url, dest)
                _place(name, remote, unpacked, staging, remote.url, dest)
                shutil.rmtree(unpacked)
                tmp.unlink()
            else:
                (staging / remote.dest).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, staging / remote.dest)
        if name == "cvc_clinicdb":
            from medtransfer.data.datasets import CVC_SEQUENCES

            rows = [f"{a},{b},{i + 1}" for i, (a, b) in enumerate(CVC_SEQUENCES)]
            (staging / "sequences.csv").write_text(
                "frame_start,frame_end,sequence\n" + "\n".join(rows) + "\n"
            )
        _check_contents(name, staging, dest)
        if dest.exists() and not any(dest.iterdir()):
            dest.rmdir()
        os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m medtransfer.data.download {{{','.join(SOURCES)}}} [DEST]")
        return 0 if argv else 2
    try:
        print(download(argv[0], argv[1] if len(argv) > 1 else None))
    except (DataError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
