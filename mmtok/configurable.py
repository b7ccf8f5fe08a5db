"""Constructor arguments are the config: record them, serialise them, rebuild from them.

A class that inherits ``Configurable`` gets its constructor arguments captured at
construction (``self.config``) and is registered by class name, so a module tree built by
injection (a tokenizer holding an encoder, a quantizer, a decoder) serialises to nested JSON
``{"class": name, "args": {...}}`` and ``build`` rebuilds it. Model: diffusers
``register_to_config``; there is no second schema kept in sync by hand.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any

from mmtok.errors import ConfigError

_REGISTRY: dict[str, type] = {}
_JSON_SCALARS = (str, int, float, bool, type(None))
# modules whose classes a saved config may name; imported on first need
MODEL_MODULES = (
    "mmtok.quantization",
    "mmtok.image.tokenizer",
    "mmtok.audio.tokenizer",
    "mmtok.video.tokenizer",
)


def _import_model_modules() -> None:
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:  # a real missing dependency, not a modality not built yet
                raise


class Configurable:
    """Mixin: records ``__init__`` arguments of the outermost constructor in ``self.config``."""

    config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Any, *args: Any, **kw: Any) -> None:
            outermost = "_recording_config" not in self.__dict__
            if outermost:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                object.__setattr__(self, "_recording_config", True)
            init(self, *args, **kw)
            if outermost:
                config = {k: v for k, v in list(bound.arguments.items())[1:]}
                object.__setattr__(self, "config", config)

        cls.__init__ = recording_init


def to_spec(obj: Configurable) -> dict[str, Any]:
    """``{"class": name, "args": {...}}`` with nested Configurable arguments serialised."""
    return {"class": type(obj).__name__, "args": {k: _encode(v, k) for k, v in obj.config.items()}}


def _encode(value: Any, key: str) -> Any:
    if isinstance(value, Configurable):
        return to_spec(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v, key) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v, key) for k, v in value.items()}
    if isinstance(value, _JSON_SCALARS):
        return value
    raise ConfigError(f"argument {key!r}: {type(value).__name__} cannot be saved in a config")


def _is_spec(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"class", "args"}


def build(spec: dict[str, Any]) -> Any:
    """Rebuild an object from ``to_spec`` output; unknown classes or keys raise ConfigError."""
    if not _is_spec(spec):
        raise ConfigError(f"expected a {{'class', 'args'}} spec, got {spec!r:.200}")
    name = spec["class"]
    if name not in _REGISTRY:
        _import_model_modules()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown class {name!r} in config (known: {sorted(_REGISTRY)})")
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(spec["args"]) - set(params))
    if unknown:
        raise ConfigError(f"{name}: unknown config key(s) {unknown}")
    args = {k: build(v) if _is_spec(v) else v for k, v in spec["args"].items()}
    try:
        return cls(**args)
    except TypeError as e:
        raise ConfigError(f"{name}: cannot build from config: {e}") from e
