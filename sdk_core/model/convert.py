"""Checkpoints from other libraries' layouts as canonical weights (no framework is imported).

``transformers``: a ``GPT2LMHeadModel`` state dict saved as safetensors maps onto the zoo GPT
(``sdk_core.zoo.gpt``). Its Conv1D weights are stored ``(in, out)`` like the
canonical layout; ``c_attn`` holds q, k and v side by side; the output layer is tied to the
token embedding (``lm_head.weight`` when the file keeps an untied one). The sizes come from the
tensors' shapes; the heads from the ``config.json`` beside the file, else ``heads``, else the
zoo model named by ``model``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, cast

import attrs
import numpy as np

from ..errors import SdkError, WeightsError
from . import zoo
from .files import check_output, read_text
from .spec import Embedding, LayerNorm, ModelSpec, TransformerBlock
from .weights import load_weights, save_weights

SOURCES = ("transformers",)
BLOCK_EPS = 1e-5  # the zoo TransformerBlock's LayerNorm eps


def _config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` beside ``path``, or ``{}`` when there is none."""
    config = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if not os.path.exists(config):
        return {}
    try:
        value = json.loads(read_text(config, "config"))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"'{config}' is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(value, dict):
        raise WeightsError(f"'{config}' must hold a JSON object (got {type(value).__name__})")
    return value


def _zoo_heads(model: str) -> int:
    spec = zoo.get(model)
    return next(layer.num_heads for layer in spec.layers if isinstance(layer, TransformerBlock))


def _check_config(config: Mapping[str, Any], where: str) -> None:
    """Refuse GPT-2 options whose arithmetic the zoo GPT does not have."""
    wrong = {
        "activation_function": ("gelu_new", "the zoo GPT's GELU is the tanh form"),
        "scale_attn_weights": (True, "the zoo GPT scales attention by 1/sqrt(head_dim)"),
        "scale_attn_by_inverse_layer_idx": (False, "the zoo GPT scales every layer alike"),
        "layer_norm_epsilon": (BLOCK_EPS, f"the zoo GPT's blocks normalize with eps {BLOCK_EPS}"),
    }
    for key, (want, why) in wrong.items():
        if key in config and config[key] != want:
            raise WeightsError(f"{where}: '{key}' is {config[key]!r}, not {want!r}: {why}")


def gpt2_from_transformers(
    path: str | os.PathLike[str], model: str = "gpt2", heads: int | None = None
) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """``(spec, canonical weights)`` of the ``GPT2LMHeadModel`` safetensors file ``path``."""
    tensors, _ = load_weights(path)
    hf = {re.sub(r"^transformer\.", "", k): np.asarray(v) for k, v in tensors.items()}
    where = f"'{path}'"
    for name in ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"):
        if name not in hf:
            raise WeightsError(f"{where} holds no GPT-2 tensor '{name}' (is it a GPT2LMHeadModel state dict?)")
    if hf["wte.weight"].ndim != 2 or hf["wpe.weight"].ndim != 2:
        raise WeightsError(f"{where}: 'wte.weight' and 'wpe.weight' must be matrices")
    vocab, dim = hf["wte.weight"].shape
    context = hf["wpe.weight"].shape[0]
    blocks = len({int(m.group(1)) for k in hf if (m := re.match(r"h\.(\d+)\.", k))})
    if blocks == 0:
        raise WeightsError(f"{where} holds no transformer blocks ('h.0.*')")
    config = _config(path)
    _check_config(config, f"config.json beside {where}")
    for key, found in (("vocab_size", vocab), ("n_positions", context), ("n_embd", dim), ("n_layer", blocks)):
        if key in config and config[key] != found:
            raise WeightsError(f"config.json beside {where} says {key} {config[key]!r}, the tensors {found}")
    n_heads = config["n_head"] if "n_head" in config else heads if heads is not None else _zoo_heads(model)
    if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1 or dim % n_heads:
        raise WeightsError(f"{where}: {n_heads!r} heads do not divide the width {dim}")
    inner = hf["h.0.mlp.c_fc.weight"].shape[-1] if "h.0.mlp.c_fc.weight" in hf else 4 * dim
    if inner % dim:
        raise WeightsError(f"{where}: the MLP width {inner} is no multiple of the width {dim}")
    spec = zoo.gpt(vocab, context, dim, n_heads, blocks)
    eps = config.get("layer_norm_epsilon", BLOCK_EPS)
    layers = [attrs.evolve(x, mlp_ratio=inner // dim) if isinstance(x, TransformerBlock) else x for x in spec.layers]
    layers[-2] = LayerNorm(eps)
    spec = attrs.evolve(spec, layers=layers, name=model)

    def take(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in hf:
            raise WeightsError(f"{where} holds no GPT-2 tensor '{name}'")
        if hf[name].shape != shape:
            raise WeightsError(f"{where}: tensor '{name}' has shape {hf[name].shape}, expected {shape}")
        if hf[name].dtype.kind != "f":
            raise WeightsError(f"{where}: tensor '{name}' holds {hf[name].dtype}, not floats")
        return hf[name].astype(np.float32)

    out = {"0.weight": take("wte.weight", (vocab, dim)), "0.position": take("wpe.weight", (context, dim))}
    for b in range(blocks):
        h, p = f"h.{b}.", f"{b + 1}."
        for ours, theirs in (("ln1.", "ln_1."), ("ln2.", "ln_2.")):
            out[f"{p}{ours}weight"] = take(f"{h}{theirs}weight", (dim,))
            out[f"{p}{ours}bias"] = take(f"{h}{theirs}bias", (dim,))
        qkv_w, qkv_b = take(f"{h}attn.c_attn.weight", (dim, 3 * dim)), take(f"{h}attn.c_attn.bias", (3 * dim,))
        for i, n in enumerate("qkv"):
            out[f"{p}attn.{n}.weight"] = np.ascontiguousarray(qkv_w[:, i * dim : (i + 1) * dim])
            out[f"{p}attn.{n}.bias"] = qkv_b[i * dim : (i + 1) * dim].copy()
        linears = (("attn.o.", "attn.c_proj.", dim, dim), ("fc1.", "mlp.c_fc.", dim, inner))
        for ours, theirs, n_in, n_out in (*linears, ("fc2.", "mlp.c_proj.", inner, dim)):
            out[f"{p}{ours}weight"] = take(f"{h}{theirs}weight", (n_in, n_out))
            out[f"{p}{ours}bias"] = take(f"{h}{theirs}bias", (n_out,))
    last = blocks + 1
    out[f"{last}.weight"], out[f"{last}.bias"] = take("ln_f.weight", (dim,)), take("ln_f.bias", (dim,))
    head = take("lm_head.weight", (vocab, dim)) if "lm_head.weight" in tensors else out["0.weight"]
    out[f"{last + 1}.weight"] = np.ascontiguousarray(head.T)  # tied: logits = h @ wte.T
    out[f"{last + 1}.bias"] = np.zeros(vocab, np.float32)
    spec.check_weights(out, what=f"weights converted from {where}")
    return spec, out


def convert_file(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    source: str = "transformers",
    model: str = "gpt2",
    heads: int | None = None,
) -> dict[str, Any]:
    """Convert the checkpoint ``path`` (``source``'s layout) to an SDK weights file ``out``
    with its spec (what ``Stack.load`` and ``sdk predict`` read); returns a report. Nothing
    is written when the input is refused."""
    if source not in SOURCES:
        raise SdkError(f"'source' must be one of {', '.join(SOURCES)} (got {source!r})")
    check_output(out, reads=[path], what="weights")
    spec, weights = gpt2_from_transformers(path, model, heads)
    save_weights(out, weights, {"spec": spec.to_json(), "converted_from": f"{source}:{os.path.basename(path)}"})
    embedding, block = cast(Embedding, spec.layers[0]), cast(TransformerBlock, spec.layers[1])
    return {
        "model": spec.name,
        "out": os.fspath(out),
        "vocab": embedding.vocab_size,
        "context": embedding.max_len,
        "dim": embedding.dim,
        "heads": block.num_heads,
        "blocks": len(spec.layers) - 3,
        "parameters": int(sum(v.size for v in weights.values())),
    }
