"""`medtransfer pretrain convert FILE --source NAME --encoder E`: a downloaded file → the canonical cache.

For files fetched by hand (Drive/Box folders, converter outputs) or pickles that `weights_only=True` refuses
(DINO full checkpoints hold an argparse Namespace; MMSeg `meta` may): the file is checked against the
source's published hash, mapped by the source's rules with the same exact accounting as a run, written once as
tensors-only safetensors + JSON record, and placed in the cache, so no later run unpickles it again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from medtransfer.errors import ConfigError, WeightsError, choices_msg
from medtransfer.pretrain.fetch import cache_path, verify, weights_dir
from medtransfer.pretrain.load import canonical_state
from medtransfer.pretrain.registry import check_pretrain, file_spec, sources


def convert(file: str | Path, source: str, encoder: str, out: str | Path | None = None, *,
            trust_pickle: bool = False) -> Path:
    """Returns the canonical safetensors path (a copy is written to `out` if given)."""
    file = Path(file).expanduser().resolve()
    if not file.is_file():
        raise WeightsError(f"convert: {file} is not a file")
    all_sources = sources()
    if source not in all_sources:
        raise ConfigError(choices_msg("pretrain source", source, all_sources))
    cfg = all_sources[source]
    if cfg.get("kind") == "none":
        raise ConfigError(f"pretrain={source} loads no weights: nothing to convert")
    if cfg.get("format") is not None:
        cfg = {**cfg, "path": str(file)}
    check_pretrain(cfg, encoder)
    spec = file_spec(cfg, encoder)
    sha = verify(file, spec, source)
    if cfg.get("format") is not None:
        _, meta = canonical_state(source, encoder, spec, file, sha, trust_pickle=trust_pickle,
                                       out_dir=weights_dir(source, sha[:12]) / "canonical")
        target = file
    else:
        target = cache_path(source, encoder, spec)
        if not target.is_file():  # the run resolves this path, then finds its canonical twin by sha256
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
        elif verify(target, spec, source) != sha:
            raise WeightsError(f"convert: {target} is already cached and differs from {file}; delete it first")
        _, meta = canonical_state(source, encoder, spec, target, sha, trust_pickle=trust_pickle)
    canonical = Path(meta["canonical"])
    if out is not None:
        out = Path(out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(canonical, out)
        return out
    return canonical
