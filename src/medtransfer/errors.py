"""Error types whose message is the whole story: one line naming the file or option and the valid choices.

They exist so the CLI can print them without a traceback and so tests can assert on them; raise them
*before* any compute is spent (config time, data-listing time).
"""


class MedTransferError(Exception):
    """Base class: a user-facing, one-line error."""


class ConfigError(MedTransferError, ValueError):
    """An unknown option, a missing setting or an impossible combination (e.g. an encoder/decoder pair)."""


class DataError(MedTransferError, ValueError):
    """A dataset file that cannot be used: missing, corrupt, or a mask that does not match its image."""


class NotApplicable(ConfigError):
    """A cell of a grid that cannot exist (an encoder a source has no weights for, a decoder an encoder cannot
    feed): rejected like any ConfigError, unless the sweep asks to carry such cells as "not applicable"."""


class WeightsError(MedTransferError, RuntimeError):
    """Pretrained weights that are missing (offline, not cached) or do not match the target model."""


class RunInUse(MedTransferError, RuntimeError):
    """The run directory is being trained by another live process (the same condition launched twice)."""


def choices_msg(what: str, value, choices) -> str:
    """The house style for 'unknown option' errors."""
    return f"unknown {what} {value!r}; valid choices: {', '.join(sorted(map(str, choices)))}"
