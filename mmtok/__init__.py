"""mmtok: turn images, audio and video into discrete tokens and back."""

from mmtok.errors import CheckpointError, ConfigError, InputError, MmtokError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "ConfigError", "InputError", "MmtokError", "__version__"]
