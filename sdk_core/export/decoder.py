"""A decoder (the zoo GPT family) as an ONNX model with past keys and values, the layout
Optimum and ONNX Runtime GenAI use, so that generation runs one token at a time.

Inputs: ``input_ids`` int64 ``(batch_size, sequence_length)``, ``attention_mask`` int64
``(batch_size, total_sequence_length)`` (1 for a real token, 0 for a pad slot, over the past
and the new tokens), ``position_ids`` int64 ``(batch_size, sequence_length)`` and, for each
block ``i``, ``past_key_values.{i}.key`` / ``.value`` float32 ``(batch_size, heads,
past_sequence_length, head_dim)``. Outputs: ``logits`` ``(batch_size, sequence_length,
vocab)`` and ``present.{i}.key`` / ``.value`` ``(batch_size, heads, total_sequence_length,
head_dim)``: the pasts with the new tokens' keys and values appended. A prefill passes pasts
with ``past_sequence_length`` 0. A new token sees the past slots and the new ones up to
itself whose mask is 1; a row whose slots are all masked gets finite garbage, never NaN.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..model import spec as S
from ..model.files import atomic_write, check_output
from ..model.weights import check_finite
from ..runtime.generate import decoder_shape
from .graph import DEFAULT_OPSET, Graph, _Emitter, check_opset, finish, require_onnx

if TYPE_CHECKING:
    import onnx

BATCH, SEQ, PAST, TOTAL = "batch_size", "sequence_length", "past_sequence_length", "total_sequence_length"
MASKED = float(np.finfo(np.float32).min)  # finite: a fully masked pad row stays free of NaN


def decoder_dims(spec: S.ModelSpec) -> tuple[int, int, int]:
    """``(blocks, heads, head_dim)`` of a decoder spec (the zoo GPT family), or the
    :class:`~sdk_core.errors.SpecError` of ``sdk_core.runtime.generate.decoder_shape`` saying why not."""
    decoder_shape(spec)
    heads = cast(S.TransformerBlock, spec.layers[1]).num_heads
    return len(spec.layers) - 3, heads, cast(S.Embedding, spec.layers[0]).dim // heads


class _DecoderEmitter(_Emitter):
    def cached_attention(
        self, prefix: str, h: str, mask: str, past: tuple[str, str], heads: int, dim: int
    ) -> tuple[str, str, str]:
        """Attention over the past and the new tokens; returns ``(output, key, value)`` where
        key and value are the presents ``(batch, heads, total, head_dim)``."""
        g = self.g
        split = g.const([0, 0, heads, dim // heads], "heads", np.int64)
        q, k, v = (
            g.op("Transpose", [g.op("Reshape", [self.linear(f"{prefix}{n}.", h), split])], perm=[0, 2, 1, 3])
            for n in "qkv"
        )
        key = g.op("Concat", [past[0], k], f"{prefix}present_key", axis=2)
        value = g.op("Concat", [past[1], v], f"{prefix}present_value", axis=2)
        scores = g.op("MatMul", [q, g.op("Transpose", [key], perm=[0, 1, 3, 2])])
        scores = g.op("Mul", [scores, g.const(1.0 / math.sqrt(dim // heads))])
        scores = g.op("Where", [mask, scores, g.const(MASKED)], f"{prefix}masked")
        mixed = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), value])
        merged = g.op(
            "Reshape", [g.op("Transpose", [mixed], perm=[0, 2, 1, 3]), g.const([0, 0, dim], "merge", np.int64)]
        )
        return self.linear(f"{prefix}o.", merged), key, value

    def mask(self) -> str:
        """``(batch, 1, seq, total)`` bool: slot ``j`` is seen by new token ``i`` when it is
        real and ``j <= past + i``."""
        g = self.g
        zero, one = g.const(0, "zero", np.int64), g.const(1, "one", np.int64)
        total = g.op("Gather", [g.op("Shape", ["attention_mask"]), one], "total", axis=0)  # a scalar
        seq = g.op("Gather", [g.op("Shape", ["input_ids"]), one], "seq", axis=0)
        keys = g.op("Range", [zero, total, one], "key_slots")  # (total,)
        queries = g.op("Range", [g.op("Sub", [total, seq]), total, one], "query_slots")  # (seq,)
        queries = g.op("Unsqueeze", [queries, g.const([1], "axes", np.int64)])
        causal = g.op("LessOrEqual", [keys, queries], "causal")  # (seq, total)
        real = g.op("Cast", ["attention_mask"], to=self.g.onnx.TensorProto.BOOL)
        real = g.op("Unsqueeze", [real, g.const([1, 2], "axes", np.int64)])  # (batch, 1, 1, total)
        return g.op("And", [causal, real], "attention_allowed")


def decoder_onnx(
    spec: S.ModelSpec,
    weights: Mapping[str, Any],
    opset: int = DEFAULT_OPSET,
    metadata: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """The decoder ``spec`` with ``weights`` as a checked ONNX model with past keys and values
    (see the module's docstring for its inputs and outputs)."""
    onnx = require_onnx()
    opset = check_opset(opset)
    blocks, heads, head_dim = decoder_dims(spec)
    spec.check_weights(dict(weights), what="weights")
    arrays = {name: np.asarray(value, dtype=np.float32) for name, value in weights.items()}
    check_finite(arrays, "weights", "; it is not exported")
    g = Graph(opset)
    emit = _DecoderEmitter(g, arrays)
    embedding = cast(S.Embedding, spec.layers[0])
    tokens = g.op("Gather", [emit.w("0.weight"), "input_ids"], "0.embedding", axis=0)
    h = g.op("Add", [tokens, g.op("Gather", [emit.w("0.position"), "position_ids"], axis=0)], "0.add_positions")
    mask, dim = emit.mask(), embedding.dim
    f32, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    info = onnx.helper.make_tensor_value_info
    inputs = [info("input_ids", i64, [BATCH, SEQ]), info("attention_mask", i64, [BATCH, TOTAL])]
    inputs.append(info("position_ids", i64, [BATCH, SEQ]))
    outputs = [info("logits", f32, [BATCH, SEQ, spec.output_shape[-1]])]
    for i in range(blocks):
        p = f"{i + 1}."
        past = (f"past_key_values.{i}.key", f"past_key_values.{i}.value")
        inputs += [info(n, f32, [BATCH, heads, PAST, head_dim]) for n in past]
        normed = emit.layernorm(f"{p}ln1.", h, 1e-5)
        attended, key, value = emit.cached_attention(f"{p}attn.", normed, mask, past, heads, dim)
        x = g.op("Add", [h, attended])
        hidden = emit.gelu(emit.linear(f"{p}fc1.", emit.layernorm(f"{p}ln2.", x, 1e-5)), f"{p}gelu")
        h = g.op("Add", [x, emit.linear(f"{p}fc2.", hidden)], f"{p}residual")
        for name, value_name in ((f"present.{i}.key", key), (f"present.{i}.value", value)):
            g.nodes.append(onnx.helper.make_node("Identity", [value_name], [name], name=name))
            outputs.append(info(name, f32, [BATCH, heads, TOTAL, head_dim]))
    n = len(spec.layers)
    h = emit.layernorm(f"{n - 2}.", h, cast(S.LayerNorm, spec.layers[-2]).eps)
    g.nodes.append(onnx.helper.make_node("Identity", [emit.linear(f"{n - 1}.", h)], ["logits"], name="logits"))
    body = onnx.helper.make_graph(g.nodes, f"{spec.name or 'model'}_decoder", inputs, outputs, g.initializers)
    return finish(onnx, body, opset, spec, {"sdk_core.task": "generate", **(metadata or {})})


def export_decoder_file(
    weights: str | os.PathLike[str], out: str | os.PathLike[str], opset: int = DEFAULT_OPSET
) -> dict[str, Any]:
    """``sdk export --task generate``: the decoder in the weights file ``weights`` as an ONNX
    model with past keys and values at ``out``, written atomically; returns a report."""
    from .writer import read_model

    opset = check_opset(opset)
    check_output(out, reads=[weights], what="ONNX file")
    spec, tensors, meta = read_model(weights)
    blocks, heads, head_dim = decoder_dims(spec)
    model = decoder_onnx(spec, tensors, opset, metadata={"sdk_core.source": os.path.basename(os.fspath(weights))})
    data = model.SerializeToString()
    atomic_write(out, data)
    return {
        "model": spec.name,
        "task": "generate",
        "opset": opset,
        "blocks": blocks,
        "heads": heads,
        "head_dim": head_dim,
        "out": os.fspath(out),
        "bytes": len(data),
        "source_format": meta.get("format", "safetensors"),
    }
