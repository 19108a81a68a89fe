"""Config values as the library takes them: `plain()` containers and a `Catalogue` of config-group options.

Why a catalogue: library code must not know where the project's config folder is (a test enforces it), yet
some of it needs a group's options by name — the valid choices in an "unknown encoder" error, the encoder
config `medtransfer pretrain fetch` builds a backbone from, every pretraining source for the docs tables.
The application layer (the Hydra entry points, the `medtransfer` console command) builds one `Catalogue`
from its config folder and hands it to the library functions that take a `catalogue` argument; tests build
one from a mapping. Inside a Hydra run the composed config already holds the chosen options.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medtransfer.errors import ConfigError, choices_msg


def plain(value: Any) -> Any:
    """OmegaConf containers → plain python (interpolations resolved); anything else unchanged."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class Catalogue:
    """Config group → {option name: plain config}: what a config folder offers, without the folder."""

    def __init__(self, groups: Mapping[str, Mapping[str, Any]]):
        self._groups = {g: {n: plain(c) for n, c in opts.items()} for g, opts in groups.items()}

    @classmethod
    def from_dir(cls, root: str | Path, groups: Iterable[str]) -> Catalogue:
        """Hydra's layout, read by the application that owns `root`: one folder per group, one
        `<option>.yaml` per option. Only the named groups are loaded (small files, read once)."""
        from omegaconf import OmegaConf

        root = Path(root)
        return cls({g: {p.stem: OmegaConf.load(p) for p in sorted((root / g).glob("*.yaml"))} for g in groups})

    def names(self, group: str) -> tuple[str, ...]:
        """The group's option names, sorted."""
        if group not in self._groups:
            raise ConfigError(choices_msg("config group", group, self._groups))
        return tuple(sorted(self._groups[group]))

    def get(self, group: str, name: str, what: str | None = None) -> dict:
        """One option's config (a fresh plain copy); ConfigError naming the valid choices if it is unknown.
        `what` names the option in that error (default: the group), e.g. "pretrain source"."""
        import copy

        names = self.names(group)
        if name not in names:
            raise ConfigError(choices_msg(what or group, name, names))
        return copy.deepcopy(self._groups[group][name])

    def group(self, group: str) -> dict[str, dict]:
        """Every option of the group by name (sorted), as fresh plain copies."""
        return {n: self.get(group, n) for n in self.names(group)}
