"""Error types of mmtok.

Every error mmtok raises on purpose is a ``MmtokError``; each subclass is also a subclass of
the matching builtin so ``except ValueError`` keeps working for callers that do not know mmtok.
Messages name the offending argument or path and say what was expected and what was got.
"""

from __future__ import annotations


class MmtokError(Exception):
    """Base class of all mmtok errors."""


class InputError(MmtokError, ValueError):
    """A bad tensor, file or argument: the message names it, with expected vs got."""


class CheckpointError(MmtokError, ValueError):
    """Missing, corrupt or incompatible weights (checksum mismatch, wrong keys, bad config)."""


class ConfigError(MmtokError, ValueError):
    """An unknown config key, a value of the wrong type or out of range."""
