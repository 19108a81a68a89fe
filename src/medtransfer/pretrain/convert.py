"""`medtransfer pretrain convert FILE --source NAME [--encoder E]`: a downloaded file → the canonical cache.

For files fetched by hand (Drive/Box folders, converter outputs) or pickles that `weights_only=True` refuses
(DINO full checkpoints hold an argparse Namespace; MMSeg `meta` may): the file is checked against the
source's published hash, mapped by the source's rules and accounted key for key against the encoder's
backbone exactly as a run would, and only then written once as tensors-only safetensors + JSON record and
copied into the cache (a temp file in the same folder, one os.replace), so no later run unpickles it again
and a file that does not fit leaves nothing behind. For the `file` source without --encoder every encoder
of the catalogue is tried, and the ones it fits are returned.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from medtransfer.configs import Catalogue
from medtransfer.errors import ConfigError, WeightsError
from medtransfer.hashing import sha256_file
from medtransfer.pretrain.cache import target_backbone
from medtransfer.pretrain.fetch import cache_path, verify, weights_dir
from medtransfer.pretrain.load import KeyMismatch, canonical_state, fits
from medtransfer.pretrain.registry import available_encoders, check_pretrain, file_spec


def convert(file: str | Path, source: str, encoder: str | None = None, out: str | Path | None = None, *,
            catalogue: Catalogue, trust_pickle: bool = False) -> tuple[Path, list[str]]:
    """(the canonical safetensors path, or `out` holding a copy of it; the encoders the file fits).
    `catalogue`: the application's `pretrain` and `encoder` options (unknown names fail naming the choices)."""
    file = Path(file).expanduser().resolve()
    if not file.is_file():
        raise WeightsError(f"convert: {file} is not a file")
    cfg = catalogue.get("pretrain", source, "pretrain source")
    if cfg.get("kind") == "none":
        raise ConfigError(f"pretrain={source} loads no weights: nothing to convert")
    declared = cfg.get("format") is not None  # the `file` source: one format, any encoder, no cache copy
    if declared:
        cfg = {**cfg, "path": str(file)}
    if encoder is None and not declared:
        raise ConfigError(f"convert --source {source} needs --encoder; valid encoders for it: "
                          f"{', '.join(available_encoders(cfg))}")
    encoders = {e: catalogue.get("encoder", e) for e in ([encoder] if encoder else catalogue.names("encoder"))}
    tried = list(encoders)
    for enc in tried:
        check_pretrain(cfg, enc)
    spec = file_spec(cfg, tried[0])
    sha = verify(file, spec, source)
    fitting: list[str] = []
    check = _fit_check(file, source, spec, {e: target_backbone(c, spec) for e, c in encoders.items()}, fitting)
    if declared:
        _, meta = canonical_state(source, encoder, spec, file, sha, trust_pickle=trust_pickle, check=check,
                                  out_dir=weights_dir(source, sha[:12]) / "canonical")
    else:
        target = cache_path(source, encoder, spec)
        if target.is_file() and sha256_file(target) != sha:
            raise WeightsError(f"convert: {target} is already cached and differs from {file}; delete it first")
        _, meta = canonical_state(source, encoder, spec, file, sha, trust_pickle=trust_pickle, check=check,
                                  name=target.name)  # the twin a run finds next to the cached file
        if not target.is_file():
            _copy(file, target)
    canonical = Path(meta["canonical"])
    if out is None:
        return canonical, fitting
    out = Path(out).expanduser()
    _copy(canonical, out)
    return out, fitting


def _fit_check(file: Path, source: str, spec, backbones: dict, fitting: list[str]):
    """The canonical_state check: the mapped file fits at least one of `backbones` (collected in `fitting`)."""
    label = f"{file} (pretrain={source})"

    def check(mapped) -> None:
        fitting.clear()
        reasons = {}
        for enc, backbone in backbones.items():
            try:
                fits(backbone, mapped, spec, label, f"{enc} encoder")
                fitting.append(enc)
            except KeyMismatch as e:
                reasons[enc] = e
        if len(reasons) == len(backbones) == 1:
            raise next(iter(reasons.values()))
        if not fitting:
            raise WeightsError(f"{label} fits no encoder; tried "
                               + ", ".join(f"{enc} ({e.short})" for enc, e in reasons.items()))

    return check


def _copy(src: Path, dest: Path) -> None:
    """A temp file next to `dest`, then one os.replace: `dest` is whole or absent, never half-written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
