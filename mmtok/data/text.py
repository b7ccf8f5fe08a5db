"""The text tokenizer of a dataset: a Hugging Face ``tokenizer.json``, by local path.

Loaded with the ``tokenizers`` library (what ``AutoTokenizer`` uses for fast tokenizers), so
``transformers`` is not needed and nothing is downloaded. Its ids come first in the dataset
vocabulary, unchanged, so a pretrained language model's embeddings still line up; ``size`` is
one more than its largest id (added tokens included).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from mmtok.errors import InputError


def _tokenizer_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        raise InputError(f"text tokenizer {str(path)!r}: no tokenizer.json there (a Hugging "
                         "Face fast tokenizer's file; AutoTokenizer.from_pretrained(...)"
                         ".save_pretrained(DIR) writes one)")  # fmt: skip
    return file


class TextTokenizer:
    """Text <-> int64 ids in ``[0, size)``, without the tokenizer's own special tokens.

    Args:
        path: a folder holding ``tokenizer.json``, or that file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise InputError("a text tokenizer needs the 'tokenizers' package: "
                             "pip install tokenizers") from None  # fmt: skip
        file = _tokenizer_file(path)
        data = file.read_bytes()
        try:
            self._tok = Tokenizer.from_str(data.decode())
        except Exception as e:  # noqa: BLE001 (the Rust library raises plain Exception)
            raise InputError(f"text tokenizer {str(file)!r} cannot be read: {e}") from None
        self.name = str(path)
        self.fingerprint = hashlib.sha256(data).hexdigest()[:16]
        ids = self._tok.get_vocab(with_added_tokens=True).values()
        self.size = max(ids, default=-1) + 1

    def encode(self, text: str) -> np.ndarray:
        """int64 ids of ``text`` (no BOS/EOS or other template tokens added)."""
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode(self, ids: list[int] | np.ndarray) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)
