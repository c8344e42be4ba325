"""Tokenizers that turn text into token ids and back, described by a small JSON object that a
weights file keeps in its metadata (key ``tokenizer``):

- ``{"type": "numbers"}``: each token id is the number it is written as, tokens separated by
  spaces (``"12 13 14"`` is ``[12, 13, 14]``): the ``counting_text`` data, exactly.
- ``{"type": "bytes"}``: ids 0..255 are the bytes of the UTF-8 text (models with a vocabulary
  of at least 256).
- ``{"type": "gpt2"}``: GPT-2's byte-level BPE, read from a ``tokenizer.json`` already on this
  machine (the ``tokenizers`` package and the Hugging Face cache); nothing is downloaded.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Sequence
from typing import Any

from ..errors import SdkError

TYPES = ("numbers", "bytes", "gpt2")
GPT2_VOCAB = 50257
GPT2_MISSING = (
    "no GPT-2 tokenizer on this machine: pip install tokenizers huggingface_hub and fetch it once with "
    "`huggingface-cli download gpt2 tokenizer.json`, or give token ids (--prompt-ids 1,2,3)"
)


class Tokenizer:
    """``encode(text) -> ids``, ``decode(ids) -> text``, and ``stream()`` for text piece by piece."""

    def __init__(self, kind: str, vocab_size: int) -> None:
        if kind not in TYPES:
            raise SdkError(f"unknown tokenizer type '{kind}' (known: {', '.join(TYPES)})")
        self.kind, self.vocab_size = kind, vocab_size
        self._bpe: Any = _gpt2() if kind == "gpt2" else None

    def describe(self) -> str:
        """The JSON description a weights file keeps under ``tokenizer``."""
        return json.dumps({"type": self.kind})

    def encode(self, text: str) -> list[int]:
        if self.kind == "numbers":
            ids = []
            for word in text.split():
                if not word.isdigit() or int(word) >= self.vocab_size:
                    raise SdkError(
                        f"'{word}' is not a token: this model's tokens are the numbers 0 to {self.vocab_size - 1}"
                    )
                ids.append(int(word))
        elif self.kind == "bytes":
            ids = list(text.encode("utf-8"))
        else:
            ids = list(self._bpe.encode(text).ids)
        bad = [i for i in ids if i >= self.vocab_size]
        if bad:
            raise SdkError(f"the text holds token {bad[0]}, outside this model's vocabulary [0, {self.vocab_size})")
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        piece = self.stream()
        return str("".join(piece(int(i)) for i in ids) + piece(None))

    def stream(self) -> Any:
        """A function from each new token id to its text (``None`` at the end, for what is
        left), so that text can be printed as tokens come."""
        if self.kind == "numbers":
            count = [0]

            def number(i: int | None) -> str:
                if i is None:
                    return ""
                count[0] += 1
                return str(i) if count[0] == 1 else f" {i}"

            return number
        if self.kind == "bytes":
            utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
            return lambda i: (
                utf8.decode(b"", final=True) if i is None else utf8.decode(bytes([i]) if i < 256 else b"\xff")
            )
        done: list[int] = []
        shown = [""]

        def bpe(i: int | None) -> str:  # the whole text so far, decoded again: pieces may be partial bytes
            if i is not None:
                done.append(i)
            text = self._bpe.decode(done)
            if i is not None and text.endswith("\ufffd"):
                return ""
            new, shown[0] = text[len(shown[0]) :], text
            return str(new)

        return bpe

    @classmethod
    def from_description(cls, text: str, vocab_size: int) -> Tokenizer:
        try:
            kind = json.loads(text)["type"]
        except (ValueError, TypeError, KeyError):
            raise SdkError(f"the weights file's tokenizer description is not valid: {text[:80]!r}") from None
        return cls(kind, vocab_size)


def for_data(data: str, vocab_size: int) -> Tokenizer | None:
    """The tokenizer of a built-in data set's token ids (``counting_text``: numbers), or None."""
    return Tokenizer("numbers", vocab_size) if data == "counting_text" else None


def for_model(metadata: dict[str, str], vocab_size: int) -> Tokenizer:
    """The tokenizer a weights file names, else GPT-2's for a GPT-2-sized vocabulary, else
    bytes for a vocabulary of 256 or more; :class:`SdkError` saying what to do otherwise."""
    if "tokenizer" in metadata:
        return Tokenizer.from_description(metadata["tokenizer"], vocab_size)
    if vocab_size == GPT2_VOCAB:
        return Tokenizer("gpt2", vocab_size)
    if vocab_size >= 256:
        return Tokenizer("bytes", vocab_size)
    raise SdkError(
        f"the weights file names no tokenizer and a vocabulary of {vocab_size} holds no bytes: "
        "give token ids (--prompt-ids 1,2,3)"
    )


def _gpt2() -> Any:
    """GPT-2's BPE from a local ``tokenizer.json`` (never downloaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        from tokenizers import Tokenizer as BPE
    except ImportError:
        raise SdkError(GPT2_MISSING) from None
    path = try_to_load_from_cache("gpt2", "tokenizer.json")
    if not isinstance(path, str):
        raise SdkError(GPT2_MISSING)
    return BPE.from_file(path)
