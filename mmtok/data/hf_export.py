"""A dataset vocabulary as a Hugging Face tokenizer whose ids are the dataset's ids.

The exported tokenizer is the dataset's text tokenizer (its ``tokenizer.json``, ids unchanged)
extended with mmtok's special tokens (``<pad> <bos> <eos> <mask> <image> </image> ...``, added as
special tokens) and one added token per media code: ``<{modality}_l{level}_{code}>``, or
``<{modality}_l{level}_s{stream}_{code}>`` for a level with several code streams (residual
VQ). A dataset without text gets a ``WordLevel`` tokenizer whose vocabulary is exactly those
tokens. Every token's id is checked against ``vocab.json`` before anything is written, so
``len(tokenizer)`` is the vocabulary size (the embedding rows a model needs) and
``tokenizer.decode(row["tokens"])`` shows the row with readable media tokens.

A special token name the text tokenizer already uses for one of its own tokens (Gemma's
``<pad>``, say) is exported as ``<mmtok_pad>`` instead (``<mmtok_image>``, ``</mmtok_image>``
for markers), so the text's own ids keep their meaning.

Written with the ``tokenizers`` library alone: ``tokenizer.json``, ``tokenizer_config.json``
and ``special_tokens_map.json``, what ``transformers.AutoTokenizer.from_pretrained(DIR)`` reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmtok.data.text import TextTokenizer
from mmtok.data.vocab import SPECIALS, LevelRange, Vocabulary
from mmtok.errors import InputError
from mmtok.fileutil import atomic_path, check_output, make_dir

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
ROLES = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "mask_token": "<mask>"}


def media_token(r: LevelRange, code: int) -> str:
    """The added token of code ``code`` of range ``r``."""
    stream = f"_s{r.stream}" if r.num_codebooks > 1 else ""
    return f"<{r.modality}_l{r.level}{stream}_{code}>"


def special_names(taken: set[str]) -> dict[str, str]:
    """mmtok special name -> its exported name (``<mmtok_…>`` where ``taken`` has it)."""
    out = {}
    for name in SPECIALS:
        slash = "/" if name.startswith("</") else ""
        out[name] = f"<{slash}mmtok_{name.strip('</>')}>" if name in taken else name
    return out


def _id_tokens(vocab: Vocabulary, specials: dict[str, str]) -> list[tuple[int, str]]:
    """(dataset id, exported token) of every special and media code, by id."""
    pairs = [(i, specials[name]) for name, i in vocab.specials.items()]
    for r in vocab.ranges:
        pairs += [(r.offset + c, media_token(r, c)) for c in range(r.size)]
    return sorted(pairs)


def _text_tokenizer(vocab: Vocabulary, text_dir: str | os.PathLike | None) -> TextTokenizer:
    path = text_dir if text_dir is not None else vocab.text.tokenizer
    if text_dir is None and not os.path.exists(path):
        raise InputError(f"the dataset's text tokenizer {path!r} (recorded in vocab.json) is "
                         "not there; pass --text-tokenizer DIR")  # fmt: skip
    text = TextTokenizer(path)
    if (text.fingerprint, text.size) != (vocab.text.fingerprint, vocab.text.size):
        raise InputError(f"text tokenizer {str(path)!r}: fingerprint {text.fingerprint}, "
                         f"{text.size} ids; the dataset's is {vocab.text.fingerprint}, "
                         f"{vocab.text.size} ids")  # fmt: skip
    return text


def build_hf_tokenizer(vocab: Vocabulary, text_dir: str | os.PathLike | None = None):  # noqa: ANN201 (tokenizers.Tokenizer; imported lazily)
    """The extended ``tokenizers.Tokenizer`` of ``vocab`` (see the module docstring).

    text_dir: the text tokenizer's folder or tokenizer.json (None: the path vocab.json records;
    checked against its fingerprint). InputError when an exported id would differ from the
    dataset's."""
    try:
        from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    except ImportError:
        raise InputError("vocab export needs the 'tokenizers' package: "
                         "pip install tokenizers") from None  # fmt: skip
    if vocab.text is None:
        specials = special_names(set())
        pairs = _id_tokens(vocab, specials)
        tok = Tokenizer(models.WordLevel({t: i for i, t in pairs}))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    else:
        tok = _text_tokenizer(vocab, text_dir)._tok
        specials = special_names(set(tok.get_vocab(with_added_tokens=True)))
        pairs = _id_tokens(vocab, specials)
        if tok.get_vocab_size(with_added_tokens=True) != vocab.text.size:
            raise InputError(f"text tokenizer {vocab.text.tokenizer!r}: its ids are not "
                             f"contiguous in [0, {vocab.text.size}); the added tokens would "
                             "not get the dataset's ids")  # fmt: skip
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in specials.values()])  # fmt: skip
    first_code = vocab.specials["<pad>"] + len(SPECIALS)
    tok.add_tokens([AddedToken(t, normalized=False) for i, t in pairs if i >= first_code])
    wrong = [(i, t) for i, t in pairs if tok.token_to_id(t) != i]
    if wrong or tok.get_vocab_size(with_added_tokens=True) != vocab.size:
        i, t = wrong[0] if wrong else (vocab.size, "size")
        raise InputError(f"exported tokenizer: {t} would get id {tok.token_to_id(t)} instead "
                         f"of {i} ({tok.get_vocab_size(with_added_tokens=True)} tokens, "
                         f"vocabulary {vocab.size})")  # fmt: skip
    return tok, specials


def _config(specials: dict[str, str], text_dir: Path | None) -> dict:
    """tokenizer_config.json: the text tokenizer's own (when it has one), mmtok's specials
    for the roles it leaves empty, the markers as additional special tokens."""
    own = text_dir / "tokenizer_config.json" if text_dir and text_dir.is_dir() else None
    config = json.loads(own.read_text()) if own and own.is_file() else {}
    config.pop("added_tokens_decoder", None)  # tokenizer.json holds them, with our ids
    config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
    for role, name in ROLES.items():
        if not config.get(role):
            config[role] = specials[name]
    markers = [specials[n] for n in SPECIALS if n not in ROLES.values()]
    config["additional_special_tokens"] = markers
    config.setdefault("clean_up_tokenization_spaces", False)
    return config


def export_vocab(vocab_path: str | os.PathLike, out_dir: str | os.PathLike,
                 text_dir: str | os.PathLike | None = None,
                 overwrite: bool = False) -> Path:  # fmt: skip
    """Write the extended tokenizer of the dataset whose ``vocab.json`` is ``vocab_path`` into
    ``out_dir``; returns ``out_dir``. Existing files are refused unless ``overwrite``."""
    vocab = Vocabulary.load(vocab_path)
    tok, specials = build_hf_tokenizer(vocab, text_dir)
    out = Path(out_dir)
    for name in FILES:
        check_output(out / name, [str(vocab_path)], overwrite)
    text = None
    if vocab.text is not None:
        text = Path(text_dir if text_dir is not None else vocab.text.tokenizer)
    config = _config(specials, text)
    roles = {role: config[role] for role in ROLES}
    make_dir(out, "tokenizer output folder")
    payloads = (tok.to_str(pretty=False), json.dumps(config, indent=2),
                json.dumps({**roles, "additional_special_tokens":
                            config["additional_special_tokens"]}, indent=2))  # fmt: skip
    for name, payload in zip(FILES, payloads, strict=True):
        with atomic_path(out / name) as tmp:
            tmp.write_text(payload)
    return out
