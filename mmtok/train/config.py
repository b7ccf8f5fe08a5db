"""Training config: typed dataclasses filled from a YAML recipe and command-line overrides.

A recipe is a small YAML diff: ``base: base.yaml`` (a path relative to the recipe, includes
may nest) is loaded first and the recipe's own keys are merged over it, mappings key by key.
Overrides ``section.key=value`` come last; values are parsed as YAML scalars. Every key is
checked: an unknown key or a value of the wrong type is a ConfigError naming the key and the
file (or "command line") that set it. The ``model`` section is ``modality`` plus the keyword
arguments of that modality's factory (``mmtok.train.modalities.MODALITIES``), checked against
the factory's signature. ``loss`` maps loss names (``mmtok.train.losses``) to weights.
``adversarial`` (optional) adds discriminators (``mmtok.train.adversarial``).
(DAC ``conf/`` is the model for small recipe diffs.)
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mmtok.errors import ConfigError
from mmtok.train.adversarial import AdversarialConfig
from mmtok.train.data import DataConfig
from mmtok.train.losses import available_losses
from mmtok.train.modalities import MODALITIES

CLI = "the command line"
SECTIONS = ("model", "data", "train", "loss", "adversarial")


@dataclass
class ModelConfig:
    """modality: key of ``MODALITIES``; args: keyword arguments of its factory."""

    modality: str = "image"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation, schedule, logging and output."""

    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    seed: int = 0
    log_every: int = 10  # TensorBoard scalars and progress-bar text
    eval_every: int = 0  # held-out metrics during training (0: only at the end)
    ckpt_every: int = 500  # checkpoint every N steps (0: only the final model)
    keep_checkpoints: int = 2  # newest checkpoints kept
    out_dir: str | None = None  # default runs/<recipe name>
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None  # torch.set_num_threads per process (None: torch default)
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = True
    plots: bool = True  # PNG plots in out_dir/plots at the end
    max_seconds: float | None = None  # end early (evaluate, save final) after this much training


@dataclass
class Config:
    """A resolved recipe. ``name`` is the recipe file's stem, ``source`` its path."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: dict[str, float] = field(default_factory=lambda: {"l1": 1.0, "quantizer": 1.0})
    adversarial: AdversarialConfig | None = None  # None: reconstruction-only training
    description: str = ""
    name: str = "run"
    source: str = ""

    @property
    def out_dir(self) -> Path:
        return Path(self.train.out_dir or f"runs/{self.name}")

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (``base`` resolved), loadable again by ``load_config``."""
        model = {"modality": self.model.modality, **self.model.args}
        plain = {
            "description": self.description,
            "model": model,
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
            "loss": dict(self.loss),
        }
        if self.adversarial is not None:
            plain["adversarial"] = dataclasses.asdict(self.adversarial)
        return _plain(plain)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # quantizer_options
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- reading and merging ------------------------------------------------------------------
Origins = dict[str, str]  # dotted key -> file (or "command line") that set it last


def _walk(tree: Mapping[str, Any], source: str, prefix: str = "") -> Origins:
    out: Origins = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        out[dotted] = source
        if isinstance(value, Mapping):
            out.update(_walk(value, source, dotted + "."))
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_recipe(path: Path, _chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Origins]:
    """The merged raw mapping of ``path`` and its ``base:`` includes, with key origins."""
    path = Path(path)
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: circular base: include ({' -> '.join(map(str, _chain))})")
    if not path.is_file():
        where = f" (included from {_chain[-1]})" if _chain else ""
        raise ConfigError(f"recipe {str(path)!r} does not exist{where}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(tree, dict) or not all(isinstance(k, str) for k in tree):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {tree!r:.80}")
    raw, origins = {}, {}
    base = tree.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"base in {path}: expected a file name, got {base!r}")
        raw, origins = read_recipe(path.parent / base, (*_chain, path.resolve()))
    return _merge(raw, tree), {**origins, **_walk(tree, str(path))}


def apply_override(raw: dict[str, Any], origins: Origins, item: str) -> None:
    """Apply one ``dotted.key=value`` (value parsed as a YAML scalar) to ``raw``."""
    key, sep, text = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: expected section.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from e
    *parents, leaf = key.split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(parents[: i + 1])} is not a section")
        node = child
    node[leaf] = value
    origins[key] = CLI
    if isinstance(value, dict):
        origins.update(_walk(value, CLI, key + "."))


# --- type checking ------------------------------------------------------------------------
_YAML12_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if args:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(map(_type_name, args))}]"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def check_type(value: Any, tp: Any, key: str, source: str) -> Any:
    """``value`` converted to ``tp`` (int -> float, list -> tuple), or a ConfigError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return check_type(value, arg, key, source)
            except ConfigError:
                if dataclasses.is_dataclass(arg) and isinstance(value, Mapping):
                    raise  # a mapping meant for the dataclass: its error names the bad key
    elif origin is Literal:
        if value in args and isinstance(value, type(args[0])):
            return value
    elif tp is type(None):
        if value is None:
            return None
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML12_FLOAT.match(value):
            return float(value)  # "1e-3": a float in YAML 1.2, a string to PyYAML (YAML 1.1)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (bool, str):
        if isinstance(value, tp):
            return value
    elif origin in (list, tuple, Sequence) or tp in (list, tuple):
        return _check_sequence(value, tp, key, source)
    elif origin in (dict, Mapping) or tp is dict:
        if isinstance(value, Mapping):
            kt, vt = args or (Any, Any)
            return {check_type(k, kt, f"{key}.{k}", source): check_type(v, vt, f"{key}.{k}", source)
                    for k, v in value.items()}  # fmt: skip
    elif dataclasses.is_dataclass(tp) and isinstance(tp, type):  # e.g. model.quantizer_options
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _dataclass_from(tp, value, key, source)
    raise ConfigError(f"{key} in {source}: expected {_type_name(tp)}, got {value!r}")


def _dataclass_from(tp: type, value: Mapping[str, Any], key: str, source: str) -> Any:
    """``tp(**value)`` with every key known and every value checked against its field type."""
    hints, names = typing.get_type_hints(tp), [f.name for f in dataclasses.fields(tp)]
    for k in value:
        if k not in names:
            raise ConfigError(f"unknown key '{key}.{k}' in {source} (known: {', '.join(names)})")
    return tp(**{k: check_type(v, hints[k], f"{key}.{k}", source) for k, v in value.items()})


def _check_sequence(value: Any, tp: Any, key: str, source: str) -> Any:
    origin, args = typing.get_origin(tp) or tp, typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key} in {source}: expected {_type_name(tp)} (a list), got {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{key} in {source}: expected {len(args)} items, got {value!r}")
        return tuple(check_type(v, a, f"{key}[{i}]", source) for i, (v, a) in
                     enumerate(zip(value, args, strict=True)))  # fmt: skip
    item = args[0] if args else Any
    items = [check_type(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _adversarial_section(raw: Any, modality: str, origins: Origins) -> AdversarialConfig | None:
    """The ``adversarial`` section checked for ``modality``; None when absent or null."""
    if raw is None:
        return None
    cfg = _section(AdversarialConfig, raw, "adversarial", origins)
    cfg.check(modality, origins.get("adversarial", "defaults"))
    return cfg


def _section(cls: type, raw: Any, name: str, origins: Origins) -> Any:
    source = origins.get(name, "defaults")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name} in {source}: expected a mapping of keys, got {raw!r:.80}")
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{name}.{key}"
        if key not in fields:
            raise ConfigError(f"unknown key {dotted!r} in {origins.get(dotted, source)} "
                              f"(known: {', '.join(fields)})")  # fmt: skip
        kwargs[key] = check_type(value, hints[key], dotted, origins.get(dotted, source))
    return cls(**kwargs)


def _model_section(raw: Any, origins: Origins) -> ModelConfig:
    source = origins.get("model", "defaults")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"model in {source}: expected a mapping of keys, got {raw!r:.80}")
    args = dict(raw)
    modality = check_type(args.pop("modality", "image"), str, "model.modality",
                          origins.get("model.modality", source))  # fmt: skip
    if modality not in MODALITIES:
        raise ConfigError(f"model.modality in {origins.get('model.modality', source)}: "
                          f"expected one of {sorted(MODALITIES)}, got {modality!r}")  # fmt: skip
    factory = MODALITIES[modality].factory
    params = inspect.signature(factory).parameters
    hints = typing.get_type_hints(factory)
    for key in args:
        dotted = f"model.{key}"
        if key not in params:
            raise ConfigError(f"unknown key {dotted!r} in {origins.get(dotted, source)} "
                              f"({factory.__name__} takes: {', '.join(params)})")  # fmt: skip
        args[key] = check_type(args[key], hints.get(key, Any), dotted, origins.get(dotted, source))
    return ModelConfig(modality, args)


def _loss_section(raw: Any, modality: str, origins: Origins) -> dict[str, float]:
    weights = check_type(raw, dict[str, float], "loss", origins.get("loss", "defaults"))
    known = available_losses(modality)
    for name in weights:
        if name not in known:
            raise ConfigError(f"unknown key 'loss.{name}' in {origins.get(f'loss.{name}')} "
                              f"(losses for {modality}: {', '.join(known)})")  # fmt: skip
    return weights


_POSITIVE = ("data.crop", "data.batch_size", "data.repeats", "train.steps", "train.log_every",
             "train.keep_checkpoints", "train.lr")  # fmt: skip
_NON_NEGATIVE = ("data.workers", "train.weight_decay", "train.warmup_steps", "train.grad_clip",
                 "train.eval_every", "train.ckpt_every", "train.min_lr_ratio")  # fmt: skip


def _check_ranges(cfg: Config, origins: Origins) -> None:
    for names, ok, what in ((_POSITIVE, lambda v: v > 0, "> 0"),
                            (_NON_NEGATIVE, lambda v: v >= 0, ">= 0")):  # fmt: skip
        for dotted in names:
            section, key = dotted.split(".")
            value = getattr(getattr(cfg, section), key)
            if not ok(value):
                raise ConfigError(f"{dotted} in {origins.get(dotted, 'defaults')}: "
                                  f"must be {what}, got {value!r}")  # fmt: skip


def build_config(raw: Mapping[str, Any], origins: Origins, name: str = "run",
                 source: str = "") -> Config:  # fmt: skip
    """Typed Config from a merged raw mapping (see ``read_recipe``)."""
    for key in raw:
        if key not in (*SECTIONS, "description"):
            raise ConfigError(f"unknown key {key!r} in {origins.get(key, source)} "
                              f"(known: base, description, {', '.join(SECTIONS)})")  # fmt: skip
    model = _model_section(raw.get("model", {}), origins)
    cfg = Config(
        model=model,
        data=_section(DataConfig, raw.get("data", {}), "data", origins),
        train=_section(TrainConfig, raw.get("train", {}), "train", origins),
        loss=_loss_section(raw.get("loss", Config().loss), model.modality, origins),
        adversarial=_adversarial_section(raw.get("adversarial"), model.modality, origins),
        description=check_type(raw.get("description", ""), str, "description",
                               origins.get("description", source)),
        name=name, source=source,
    )  # fmt: skip
    _check_ranges(cfg, origins)
    return cfg


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read ``path`` (with its ``base:`` includes), apply ``overrides``, check every key."""
    path = Path(path)
    raw, origins = read_recipe(path)
    for item in overrides:
        apply_override(raw, origins, item)
    return build_config(raw, origins, name=path.stem, source=str(path))
