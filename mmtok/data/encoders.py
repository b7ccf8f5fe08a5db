"""The tokenizers of a prep job and the vocabulary they define.

Which tokenizers a job uses depends only on what it names, never on the files it reads:
the tokenizers named per modality; with none named, every modality's default
(``default_tokenizers``: the default preset; for audio the three 44.1 kHz music levels); with
a reused ``vocab.json`` (``--vocab``), the tokenizers it records for what is not named (the
text tokenizer included). An input whose modality has no tokenizer, or text without a text
tokenizer, is refused before anything is written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mmtok.data.manifest import Item
from mmtok.data.text import TextTokenizer
from mmtok.data.vocab import MODALITIES, LevelSpec, TextRange, Vocabulary
from mmtok.errors import InputError
from mmtok.media import MediaSpec, a_or_an


@dataclass
class Encoder:
    """The tokenizer levels of one modality (coarse to fine as the wrapper orders them)."""

    name: str
    levels: list  # list[Tokenizer]
    spec: MediaSpec


@dataclass
class JobTokenizers:
    """Everything a job encodes with: media encoders by modality, the text tokenizer (or
    None) and the vocabulary they define."""

    media: dict[str, Encoder]
    text: TextTokenizer | None
    vocab: Vocabulary

    def names(self) -> tuple[dict[str, str], str | None]:
        """What ``load_tokenizers`` takes to load them again (e.g. in a Ray actor)."""
        return {m: e.name for m, e in self.media.items()}, self.text and self.text.name


def tokenizer_names(named: dict[str, str], reuse: Vocabulary | None = None) -> dict[str, str]:
    """modality -> preset / checkpoint of a job (see the module docstring)."""
    unknown = sorted(set(named) - set(MODALITIES))
    if unknown:
        raise InputError(f"tokenizers: unknown modality {unknown[0]!r} (expected one of "
                         f"{list(MODALITIES)})")  # fmt: skip
    if reuse is not None:
        return {**reuse.tokenizers(), **named}
    return dict(named) if named else default_tokenizers()


def default_tokenizers() -> dict[str, str]:
    """modality -> the tokenizer prep uses when none is named: the default preset, and for
    audio the three 44.1 kHz Jukebox levels (``mmtok.presets.MUSIC_LEVELS``) when bundled."""
    from mmtok.presets import MUSIC_LEVELS, default_preset, list_presets

    defaults = {m: name for m in MODALITIES if (name := default_preset(m)) is not None}
    if "audio" in defaults and set(MUSIC_LEVELS) <= set(list_presets()):
        defaults["audio"] = ",".join(MUSIC_LEVELS)
    return defaults


def load_levels(name: str) -> list:
    """The tokenizer of a preset / checkpoint folder; or audio levels (by hop): of a
    ``MultiLevelAudioTokenizer.save_pretrained`` folder (``hop*/`` checkpoints), or of a
    comma-separated list of presets / folders (``audio-hop8,audio-hop32,audio-hop128``)."""
    from mmtok.audio.tokenizer import MultiLevelAudioTokenizer
    from mmtok.checkpoint import load_pretrained

    path = Path(name)
    if "," in name and not path.exists():  # a folder may have a comma in its name
        return list(MultiLevelAudioTokenizer.from_levels(name.split(",")).levels)
    if not (path / "config.json").exists() and any(path.glob("hop*/config.json")):
        return list(MultiLevelAudioTokenizer.from_pretrained(path).levels)
    model = load_pretrained(name)
    return list(getattr(model, "levels", [model]))


def load_encoders(names: dict[str, str]) -> dict[str, Encoder]:
    """Load every named tokenizer; InputError when one is of another modality."""
    out = {}
    for modality in sorted(names, key=MODALITIES.index):
        levels = load_levels(names[modality])
        got = getattr(levels[0], "modality", None)
        if got != modality:
            raise InputError(f"{modality} tokenizer {names[modality]!r} is {a_or_an(str(got))} "
                             "tokenizer")  # fmt: skip
        out[modality] = Encoder(names[modality], levels, MediaSpec.of(levels[0]))
    return out


def load_tokenizers(names: dict[str, str], text: str | None) -> JobTokenizers:
    """Load the media tokenizers ``names`` (modality -> name) and the text tokenizer ``text``
    (a folder with tokenizer.json, or None)."""
    media = load_encoders(names)
    text_tok = TextTokenizer(text) if text else None
    text_range = TextRange(text_tok.name, text_tok.fingerprint, text_tok.size) if text else None
    levels = [LevelSpec(m, e.name, t.fingerprint(), i, t.codebook_size, t.num_codebooks)
              for m, e in media.items() for i, t in enumerate(e.levels)]  # fmt: skip
    return JobTokenizers(media, text_tok, Vocabulary.build(levels, text_range))


def job_tokenizers(named: dict[str, str], text: str | None, vocab: str | None) -> JobTokenizers:
    """A job's tokenizers: those named, the rest from ``vocab`` (a vocab.json to reproduce,
    checked) or the defaults (see the module docstring)."""
    reuse = Vocabulary.load(vocab) if vocab else None
    if reuse is not None and text is None and reuse.text is not None:
        text = reuse.text.tokenizer
    tk = load_tokenizers(tokenizer_names(named, reuse), text)
    if reuse is not None:
        diffs = tk.vocab.differences(reuse)
        if diffs:
            raise InputError(f"--vocab {vocab!r}: this job's tokenizers give other ids: "
                             f"{'; '.join(diffs)}")  # fmt: skip
    return tk


def check_covered(items: list[Item], tk: JobTokenizers) -> None:
    """InputError when an input's modality has no tokenizer in the job, or an input has text
    and the job no text tokenizer."""
    if tk.text is None:
        texts = [it for it in items if any(k == "text" for k, _ in it.parts())]
        if texts:
            raise InputError(f"{len(texts)} input(s) with text (e.g. {texts[0].path!r}) but no "
                             "text tokenizer: pass --text-tokenizer DIR")  # fmt: skip
    encoders = tk.media
    media = [(m, p) for it in items for m, p in it.media()]
    missing = Counter(m for m, _ in media if m not in encoders)
    if missing:
        modality, n = missing.most_common(1)[0]
        example = next(p for m, p in media if m == modality)
        have = ", ".join(f"{m}={e.name}" for m, e in encoders.items()) or "none"
        hint = (f"name one with --{modality}-tokenizer" if modality in MODALITIES
                else f"modality must be one of {list(MODALITIES)}")  # fmt: skip
        raise InputError(f"{n} {modality} input(s) (e.g. {example!r}) but the job has no "
                         f"{modality} tokenizer (it has: {have}); {hint}")  # fmt: skip
