"""build_quantizer / QuantizerOptions: every quantizer option is reachable from a recipe's
``model:`` section, in every modality, and builds what the quantizer class builds directly."""

from __future__ import annotations

import inspect

import pytest
import yaml

from mmtok.audio.tokenizer import audio_tokenizer
from mmtok.configurable import to_spec
from mmtok.errors import ConfigError
from mmtok.image.tokenizer import image_tokenizer
from mmtok.quantization import FSQ, QuantizerOptions, ResidualVQ, VectorQuantizer
from mmtok.train import load_config
from mmtok.train.modalities import build_model
from mmtok.video.tokenizer import video_tokenizer

D, K = 8, 32  # latent_dim and codebook_size of the tiny models below
TINY = {
    "image": {"downsample": 4, "hidden": 8, "latent_dim": D, "codebook_size": K},
    "audio": {"hop": 8, "width": 4, "latent_dim": D, "res_depth": 1, "codebook_size": K},
    "video": {"downsample": [2, 2, 2], "hidden": 8, "latent_dim": D, "codebook_size": K},
}
# model: keys of a recipe -> the quantizer the class builds directly with that option
CASES = {
    "l2": ({"quantizer": "vq"}, lambda: VectorQuantizer(D, K)),
    "cosine": ({"quantizer_options": {"cosine": True}}, lambda: VectorQuantizer(D, K, cosine=True)),
    "learnable": ({"quantizer_options": {"ema": False}}, lambda: VectorQuantizer(D, K, ema=False)),
    "decay": ({"quantizer_options": {"decay": 0.9}}, lambda: VectorQuantizer(D, K, decay=0.9)),
    "beta": ({"quantizer_options": {"beta": 0.5}}, lambda: VectorQuantizer(D, K, beta=0.5)),
    "dead_code_ratio": ({"quantizer_options": {"dead_code_ratio": 0.1}},
                        lambda: VectorQuantizer(D, K, dead_code_ratio=0.1)),
    "dead_code_threshold": ({"dead_code_threshold": 2.0},
                            lambda: VectorQuantizer(D, K, dead_code_threshold=2.0)),
    "codebook_dim": ({"codebook_dim": 4}, lambda: VectorQuantizer(D, K, codebook_dim=4)),
    "init": ({"quantizer_options": {"init": "uniform"}},
             lambda: VectorQuantizer(D, K, init="uniform")),
    "fsq_levels": ({"quantizer": "fsq", "quantizer_options": {"levels": [4, 3, 5]}},
                   lambda: FSQ(D, [4, 3, 5])),
    "rvq_dropout": ({"quantizer": "rvq", "num_quantizers": 3, "quantizer_dropout": 0.5,
                     "codebook_dim": 4, "quantizer_options": {"cosine": True, "ema": False,
                     "decay": 0.9, "beta": 0.5, "dead_code_ratio": 0.1, "init": "data"}},
                    lambda: ResidualVQ(D, K, 3, quantizer_dropout=0.5, codebook_dim=4,
                                       cosine=True, ema=False, decay=0.9, beta=0.5,
                                       dead_code_ratio=0.1, init="data")),
}  # fmt: skip
# constructor arguments a recipe does not set: shapes given elsewhere, init heuristics, seeds
NOT_OPTIONS = {"dim", "codebook_size", "num_quantizers", "kmeans_iters", "seed"}


def _recipe(tmp_path, modality: str, model: dict) -> str:
    path = tmp_path / f"{modality}.yaml"
    path.write_text(yaml.safe_dump({"model": {"modality": modality, **TINY[modality], **model}}))
    return str(path)


@pytest.mark.parametrize("modality", sorted(TINY))
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_option_builds_from_a_recipe(tmp_path, modality, case):
    model, expected = CASES[case]
    cfg = load_config(_recipe(tmp_path, modality, model))
    quantizer = build_model(cfg.model.modality, cfg.model.args).quantizer
    assert to_spec(quantizer) == to_spec(expected())
    # the recipe written back (as the trainer does) loads to the same model arguments
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_config(tmp_path / "again.yaml").model.args == cfg.model.args


def test_every_quantizer_option_is_covered():
    """A new constructor argument of a quantizer must be reachable (and added to CASES)."""
    reachable = {"cosine", "ema", "decay", "beta", "dead_code_ratio", "dead_code_threshold",
                 "codebook_dim", "levels", "quantizer_dropout", "init"}  # fmt: skip
    for cls in (VectorQuantizer, ResidualVQ, FSQ):
        params = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert params - NOT_OPTIONS <= reachable, cls.__name__
    assert reachable - {"dead_code_threshold", "codebook_dim", "quantizer_dropout"} == {
        f for f in QuantizerOptions.__dataclass_fields__
    }


def test_every_factory_takes_the_same_quantizer_arguments():
    names = {"quantizer", "codebook_size", "num_quantizers", "quantizer_dropout", "codebook_dim",
             "dead_code_threshold", "quantizer_options"}  # fmt: skip
    for factory in (image_tokenizer, audio_tokenizer, video_tokenizer):
        assert names <= set(inspect.signature(factory).parameters), factory.__name__


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"quantizer_options": {"cosin": True}}, "model.quantizer_options.cosin"),
        ({"quantizer_options": {"beta": "high"}}, "model.quantizer_options.beta"),
        ({"quantizer_options": {"levels": [4, "x"]}}, r"model.quantizer_options.levels\[1\]"),
        ({"quantizer": "fsq", "quantizer_options": {"cosine": True}}, "cosine .*'fsq'"),
        ({"quantizer_options": {"levels": [4, 4]}}, "levels .*'vq'"),
    ],
)
def test_bad_options_raise_config_errors(tmp_path, model, match):
    with pytest.raises(ConfigError, match=match):
        cfg = load_config(_recipe(tmp_path, "image", model))
        build_model(cfg.model.modality, cfg.model.args)
