"""Generation in ONNX Runtime: the core's decoder export (``sdk_core.export.decoder``, past keys
and values in and presents out) made from the model's current weights, run once for the
prompts and once per new token with the presents fed back as the pasts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sdk_core import SdkError
from sdk_core.export.decoder import decoder_dims, decoder_onnx

if TYPE_CHECKING:
    from ._runtime import OrtModel


class OrtDecoder:
    """``prefill(ids, lengths)`` and ``step(ids)`` as ``sdk_make_decoder`` describes them."""

    def __init__(self, model: OrtModel, batch: int, capacity: int) -> None:
        self.blocks, self.heads, self.head_dim = decoder_dims(model.spec)
        self.batch, self.capacity = batch, capacity
        if model.decoder is None:  # made again once the weights change
            model.decoder = model.start(decoder_onnx(model.spec, model.weights).SerializeToString())
        self.session = model.decoder
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.mask = np.zeros((batch, 0), np.int64)
        self.pasts: dict[str, np.ndarray] = {}

    def _run(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        if self.mask.shape[1] > self.capacity:
            raise SdkError(f"the decoder holds {self.capacity} positions; {self.mask.shape[1]} were asked for")
        feeds = {"input_ids": ids, "attention_mask": self.mask, "position_ids": positions, **self.pasts}
        logits, *presents = self.session.run(self.outputs, feeds)
        self.pasts = {
            name.replace("present.", "past_key_values.", 1): p
            for name, p in zip(self.outputs[1:], presents, strict=True)
        }
        return np.ascontiguousarray(logits[:, -1], dtype=np.float32)

    def prefill(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        t = ids.shape[1]
        slots = np.arange(t)[None, :] - (t - np.asarray(lengths, np.int64))[:, None]  # position of each slot
        self.mask = (slots >= 0).astype(np.int64)
        empty = np.zeros((len(ids), self.heads, 0, self.head_dim), np.float32)
        self.pasts = {f"past_key_values.{i}.{kv}": empty for i in range(self.blocks) for kv in ("key", "value")}
        return self._run(ids, np.maximum(slots, 0))

    def step(self, ids: np.ndarray) -> np.ndarray:
        positions = self.mask.sum(axis=1, keepdims=True)  # each row's real tokens so far
        self.mask = np.concatenate([self.mask, np.ones((len(self.mask), 1), np.int64)], axis=1)
        return self._run(np.asarray(ids, np.int64).reshape(-1, 1), positions)
