"""mmtok: turn images, audio and video into discrete tokens and back."""

from mmtok.errors import CheckpointError, ConfigError, InputError, MmtokError

__version__ = "0.1.0"


def load_tokenizer(name: str):  # noqa: ANN201 (returns a Tokenizer; kept lazy)
    """A bundled preset by name, or a checkpoint folder written by ``save_pretrained``."""
    from mmtok.checkpoint import load_pretrained

    return load_pretrained(name)


def list_presets() -> list[str]:
    """Names of the bundled presets."""
    from mmtok.presets import list_presets as _list

    return _list()


def __getattr__(name: str):  # noqa: ANN202 (lazy public classes keep `import mmtok` light)
    if name == "Tokenizer":
        from mmtok.tokenizer import Tokenizer

        return Tokenizer
    if name == "Tokens":
        from mmtok.tokens import Tokens

        return Tokens
    raise AttributeError(f"module 'mmtok' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "ConfigError",
    "InputError",
    "MmtokError",
    "Tokenizer",
    "Tokens",
    "__version__",
    "list_presets",
    "load_tokenizer",
]
