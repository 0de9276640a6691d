"""The exceptions gluon-bof raises for bad input, settings and files (never for its own bugs).

Every one derives from :class:`GluonBofError`, and also from the builtin a caller would expect
(``ValueError`` for bad values, ``RuntimeError`` for failed downloads), so ``except ValueError``
keeps working. The scripts turn a :class:`GluonBofError` (and ``FileNotFoundError``) into one line,
``<script>: error: <message>``, and exit status 2; anything else is a bug and keeps its traceback.
This module imports nothing from the package: every layer may use it.
"""

__all__ = ["GluonBofError", "ConfigError", "CheckpointError"]


class GluonBofError(Exception):
    """Base of gluon-bof's user-facing errors; the message says what is wrong and what to change."""


class ConfigError(GluonBofError, ValueError):
    """Settings that cannot work together (e.g. mixup asked for but never on in the schedule)."""


class CheckpointError(GluonBofError, ValueError):
    """A checkpoint is missing, unreadable, or does not fit the run that loads it."""
