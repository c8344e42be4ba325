"""Autoregressive generation, the framework-neutral half: checking a decoder spec and its
prompts, left padding, seeded sampling and the decoding loop. The framework half is the
decoder a plugin makes (``sdk_make_decoder``): ``prefill(ids, lengths)`` and ``step(ids)``,
each returning the last position's logits. Sampling happens here, on float64 copies of the
logits, with one ``np.random.Generator(PCG64(seed))``: every framework gives the same tokens
wherever its logits agree."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import numpy as np

from ..errors import SdkError, SpecError
from ..model import spec as S
from ..model.spec import ModelSpec
from ..plugins.decoding import decoder_layout

OnToken = Callable[[int, int], Any]
"""``on_token(row, token_id)``: called once per new token, in the order tokens are made."""


def decoder_shape(spec: ModelSpec) -> tuple[int, int]:
    """``(vocab, context)`` of a decoder spec (the zoo GPT family, see
    :func:`~sdk_core.plugins.decoding.decoder_layout`) whose last layer gives one logit per
    token, or :class:`SpecError` saying why ``spec`` is not one."""
    if spec.input_dtype != "int64":
        raise SpecError(
            f"model '{spec.name}' is not a decoder: it takes {spec.input_dtype} inputs, not int64 token ids"
        )
    decoder_layout(spec)
    embedding, last = spec.layers[0], spec.layers[-1]
    if not isinstance(last, S.Dense) or last.units != embedding.vocab_size:  # type: ignore[attr-defined]
        raise SpecError(
            f"model '{spec.name}' is not a decoder: its last layer does not give one logit per token "
            f"({embedding.vocab_size})"  # type: ignore[attr-defined]
        )
    return embedding.vocab_size, embedding.max_len  # type: ignore[attr-defined]


def check_prompts(prompt_ids: Any, vocab: int) -> list[np.ndarray]:
    """The prompts as int64 arrays: a list of id sequences or a 2-D int array (one per row)."""
    if isinstance(prompt_ids, np.ndarray):
        if prompt_ids.ndim != 2:
            raise SdkError(f"'prompt_ids' must be a 2-D array or a list of id sequences (got {prompt_ids.ndim}-D)")
        rows: Iterable[Any] = list(prompt_ids)
    elif isinstance(prompt_ids, (list, tuple)):
        rows = prompt_ids
    else:
        raise SdkError(f"'prompt_ids' must be a list of id sequences or a 2-D array (got {type(prompt_ids).__name__})")
    out = []
    for i, row in enumerate(rows):
        a = np.asarray(row)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise SdkError(f"prompt {i} must be a sequence of int token ids (got {a.dtype} of shape {a.shape})")
        if a.size == 0:
            raise SdkError(f"prompt {i} is empty: give at least one token")
        if a.min() < 0 or a.max() >= vocab:
            bad = a.min() if a.min() < 0 else a.max()
            raise SdkError(f"prompt {i}: token id {bad} is outside the vocabulary [0, {vocab})")
        out.append(a.astype(np.int64))
    if not out:
        raise SdkError("no prompt: give at least one prompt of at least one token")
    return out


def left_pad(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, lengths)``: the rows right-aligned in one int64 array, pad slots 0."""
    lengths = np.array([len(r) for r in rows], np.int64)
    ids = np.zeros((len(rows), int(lengths.max())), np.int64)
    for b, r in enumerate(rows):
        ids[b, ids.shape[1] - len(r) :] = r
    return ids, lengths


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@attrs.frozen
class Sampler:
    """Picks the next token of each row from its logits: greedy at ``temperature`` 0 (argmax,
    the lowest id on ties), else a draw from ``softmax(logits / temperature)`` kept to the
    ``top_k`` most likely ids, then to the smallest set whose probability reaches ``top_p``."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    rng: np.random.Generator = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        t, k, p = self.temperature, self.top_k, self.top_p
        if isinstance(t, bool) or not isinstance(t, (int, float, np.number)) or not t >= 0 or not math.isfinite(t):
            raise SdkError(f"'temperature' must be a number >= 0 (got {t!r})")
        if k is not None and (not _is_int(k) or k < 1):
            raise SdkError(f"'top_k' must be an int >= 1 or None (got {k!r})")
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float, np.number)) or not 0 < p <= 1):
            raise SdkError(f"'top_p' must be a number in (0, 1] or None (got {p!r})")
        if not _is_int(self.seed) or self.seed < 0:
            raise SdkError(f"'seed' must be an int >= 0 (got {self.seed!r})")
        object.__setattr__(self, "rng", np.random.Generator(np.random.PCG64(int(self.seed))))

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits, np.float64)
        if self.temperature == 0:
            return np.asarray(np.argmax(logits, axis=-1), np.int64)
        draws = self.rng.random(len(logits))  # one per row and step, whichever rows are kept
        return np.array([self._pick(row, u) for row, u in zip(logits, draws, strict=True)], np.int64)

    def _pick(self, logits: np.ndarray, u: float) -> int:
        z = logits / self.temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")  # most likely first, lower ids first on ties
        if self.top_k is not None:
            order = order[: self.top_k]
        kept = p[order]
        if self.top_p is not None:
            n = int(np.searchsorted(np.cumsum(kept), self.top_p * (1 - 1e-12))) + 1
            kept, order = kept[:n], order[:n]
        cum = np.cumsum(kept)
        return int(order[min(int(np.searchsorted(cum, u * cum[-1], side="right")), len(order) - 1)])


def decode(
    decoder: Any,
    rows: Sequence[np.ndarray],
    max_new_tokens: int,
    sampler: Sampler,
    stop_ids: Iterable[int] | None = None,
    use_cache: bool = True,
    on_token: OnToken | None = None,
) -> list[np.ndarray]:
    """The new tokens of each row, a row ending at its first stop id (kept). With
    ``use_cache`` off, every step recomputes the whole sequence with ``decoder.prefill``."""
    ids, lengths = left_pad(rows)
    stops = {int(s) for s in stop_ids or ()}
    batch = len(rows)
    new = np.zeros((batch, max_new_tokens), np.int64)
    done = np.zeros(batch, bool)
    ends = np.full(batch, max_new_tokens)
    logits = np.asarray(decoder.prefill(ids, lengths))
    for t in range(max_new_tokens):
        tokens = sampler(logits)
        new[:, t] = tokens
        for b in np.flatnonzero(~done):
            if on_token is not None:
                on_token(int(b), int(tokens[b]))
            if int(tokens[b]) in stops:
                done[b], ends[b] = True, t + 1
        if done.all() or t == max_new_tokens - 1:
            break
        if use_cache:
            logits = np.asarray(decoder.step(tokens))
        else:
            logits = np.asarray(decoder.prefill(np.concatenate([ids, new[:, : t + 1]], axis=1), lengths + t + 1))
    return [new[b, : ends[b]].copy() for b in range(batch)]
