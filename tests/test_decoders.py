"""The key/value-cache decoders of jax, tensorflow and mindspore (``sdk_make_decoder``): every
step's logits against ``Stack.predict`` on the whole sequence, left-padded rows against each
row alone, and decoding that compiles once."""

from __future__ import annotations

import numpy as np
import pytest

from sdk_core import Stack, zoo
from sdk_core.errors import SdkError, SpecError
from sdk_core.plugins.requests import DecodeRequest

FRAMEWORKS = [
    pytest.param(name, marks=pytest.mark.needs_framework(name)) for name in ("jax", "tensorflow", "mindspore")
]
CONTEXT = 48


@pytest.fixture(scope="module", params=FRAMEWORKS)
def stack(request) -> Stack:
    return Stack(request.param).build(zoo.gpt(vocab_size=64, max_len=CONTEXT), seed=0)


def _decoder(stack: Stack, batch: int, capacity: int = CONTEXT):
    return stack.manager.make_decoder(
        DecodeRequest(stack.framework.name, stack.model, stack.spec, stack.device, batch, capacity)
    )


def _recomputed(stack: Stack, rows: list[list[int]]) -> np.ndarray:
    """The last position's logits of each row, from ``predict`` on the row right-padded to the
    context (causal attention: the padding after a position never changes it)."""
    x = np.zeros((len(rows), CONTEXT), np.int64)
    for i, row in enumerate(rows):
        x[i, : len(row)] = row
    out = stack.predict(x)
    return np.stack([out[i, len(row) - 1] for i, row in enumerate(rows)])


def _greedy(decoder, prompts: list[list[int]], steps: int) -> tuple[list[list[int]], list[np.ndarray]]:
    """Prefill the left-padded prompts, then ``steps`` greedy tokens: the sequences and each call's logits."""
    t = max(map(len, prompts))
    ids = np.zeros((len(prompts), t), np.int64)
    for i, p in enumerate(prompts):
        ids[i, t - len(p) :] = p
    seqs, logits = [list(p) for p in prompts], [decoder.prefill(ids, np.array([len(p) for p in prompts]))]
    for _ in range(steps):
        nxt = logits[-1].argmax(-1)
        for seq, token in zip(seqs, nxt, strict=True):
            seq.append(int(token))
        logits.append(decoder.step(nxt.astype(np.int64)))
    return seqs, logits


def test_each_step_equals_recomputing_the_whole_sequence(stack):
    prompt = [5, 17, 3, 40, 22]
    seqs, logits = _greedy(_decoder(stack, 1), [prompt], 20)
    assert all(l.dtype == np.float32 and l.shape == (1, 64) for l in logits)
    want = _recomputed(stack, [seqs[0][: len(prompt) + i] for i in range(21)])
    np.testing.assert_allclose(np.concatenate(logits), want, atol=1e-4, rtol=0)


def test_left_padded_rows_give_what_each_row_gives_alone(stack):
    prompts = [[9, 1, 60], [4, 4, 33, 12, 7, 50, 2]]
    seqs, logits = _greedy(_decoder(stack, 2, capacity=16), prompts, 6)
    for i, prompt in enumerate(prompts):
        alone_seqs, alone = _greedy(_decoder(stack, 1, capacity=16), [prompt], 6)
        assert alone_seqs[0] == seqs[i]
        np.testing.assert_allclose(np.stack([l[i] for l in logits]), np.concatenate(alone), atol=1e-4, rtol=0)
    want = _recomputed(stack, [seqs[0], seqs[1]])
    np.testing.assert_allclose(logits[-1], want, atol=1e-4, rtol=0)


def test_bad_calls_get_one_clear_error(stack):
    decoder = _decoder(stack, 1, capacity=4)
    with pytest.raises(SdkError, match="before prefill"):
        decoder.step(np.array([1]))
    with pytest.raises(SpecError, match="outside the vocabulary"):
        decoder.prefill(np.array([[1, 64]]), np.array([2]))
    decoder.prefill(np.array([[1, 2, 3]]), np.array([3]))
    decoder.step(np.array([4]))
    with pytest.raises(SdkError, match="cache is full"):
        decoder.step(np.array([5]))
    # made through the plugin manager, the decoder's own SpecError comes back as one PluginError line
    with pytest.raises(SdkError, match="'capacity' 49 exceeds the model's context of 48"):
        _decoder(stack, 1, capacity=CONTEXT + 1)
    with pytest.raises(SdkError, match="model 'mlp' is not a decoder"):
        s = Stack(stack.framework.name).build(zoo.mlp(), seed=0)
        s.manager.make_decoder(DecodeRequest(s.framework.name, s.model, s.spec, s.device, 1, 4))


@pytest.mark.needs_framework("jax")
def test_jax_decodes_with_one_compiled_step():
    stack = Stack("jax").build(zoo.gpt(vocab_size=64, max_len=CONTEXT), seed=0)
    decoder = _decoder(stack, 2)
    _greedy(decoder, [[1, 2], [3, 4, 5]], 20)
    assert decoder._step._cache_size() == 1
    _greedy(decoder, [[6], [7, 8, 9, 10]], 20)  # a second prompt of another length: prefill compiles, step not
    _greedy(_decoder(stack, 2), [[6], [7, 8]], 5)  # a new decoder of the same shape: the same function
    assert decoder._step._cache_size() == 1
    assert decoder._prefill._cache_size() == 2  # prompts padded to 2 or 4 slots


@pytest.mark.needs_framework("tensorflow")
def test_tensorflow_decodes_with_one_traced_step():
    stack = Stack("tensorflow").build(zoo.gpt(vocab_size=64, max_len=CONTEXT), seed=0)
    decoder = _decoder(stack, 2)
    _greedy(decoder, [[1, 2], [3, 4, 5]], 20)
    _greedy(decoder, [[6], [7, 8, 9, 10]], 20)
    _greedy(_decoder(stack, 2), [[6], [7, 8]], 5)  # a new decoder of the same shape: the same functions
    assert decoder._step.experimental_get_tracing_count() == 1
    assert decoder._prefill.experimental_get_tracing_count() == 1  # its signature leaves the length free


@pytest.mark.needs_framework("mindspore")
def test_mindspore_decodes_with_one_compiled_step():
    from mindspore.graph import api  # its set of compiled graph phases, named after the function

    stack = Stack("mindspore").build(zoo.gpt(vocab_size=64, max_len=CONTEXT), seed=0)
    steps = lambda: sum(phase.startswith("sdk_mindspore._decode.step.") for phase in api.ms_compile_cache)
    before = steps()
    decoder = _decoder(stack, 2, capacity=40)
    _greedy(decoder, [[1, 2], [3, 4, 5]], 20)
    _greedy(_decoder(stack, 2, capacity=40), [[6], [7, 8, 9, 10]], 20)  # a new decoder: the same graph
    assert steps() - before == 1
