"""Generation: the key/value-cache decoders against recomputing, across frameworks, with
padding, seeded sampling, the tokenizer, and ``sdk generate`` on bad input."""

from __future__ import annotations

import functools
import json

import attrs
import numpy as np
import pytest

from sdk_core import DecodeRequest, NotAvailableError, Stack, zoo
from sdk_core.cli import main
from sdk_core.model.tokenizer import Tokenizer
from sdk_core.model.weights import read_metadata
from sdk_core.plugins.manager import get_manager

pytestmark = pytest.mark.needs_framework("numpy")

GENERATES = sorted(
    name for name, fw in get_manager().frameworks().items() if fw.installed and "generate" in fw.capabilities
)
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [3, 1], [42, 2, 9, 17]]
SPEC = zoo.gpt(max_len=80)


@pytest.fixture(scope="module")
def reference() -> Stack:
    return Stack("numpy").build(SPEC, seed=3)


@pytest.fixture(scope="module", params=GENERATES)
def stack(request, reference) -> Stack:
    return reference if request.param == "numpy" else reference.to(request.param)


@functools.cache
def predict_last(seq: tuple[int, ...]) -> np.ndarray:
    """NumPy's predict on the whole sequence, unpadded: the last position's logits."""
    whole = Stack("numpy").build(attrs.evolve(SPEC, input_shape=(len(seq),)), seed=3)  # the reference's weights
    return whole.predict(np.asarray(seq)[None])[0, -1]


def test_cache_logits_equal_predict_and_recompute_at_every_step(stack):
    """Left-padded prefill, then steps: each row's logits equal predict on the row alone."""
    tokens = np.random.default_rng(0).integers(0, 64, (len(PROMPTS), 6))
    ids = np.zeros((len(PROMPTS), 7), np.int64)
    for b, p in enumerate(PROMPTS):
        ids[b, 7 - len(p) :] = p
    lengths = np.array([len(p) for p in PROMPTS])
    decoder = stack.manager.make_decoder(
        DecodeRequest(stack.framework.name, stack.model, stack.spec, stack.device, len(PROMPTS), 13)
    )
    logits = decoder.prefill(ids, lengths)
    for t in range(tokens.shape[1] + 1):
        assert logits.dtype == np.float32 and logits.shape == (len(PROMPTS), 64)
        for b, p in enumerate(PROMPTS):
            np.testing.assert_allclose(logits[b], predict_last((*p, *map(int, tokens[b, :t]))), atol=1e-4)
        if t < tokens.shape[1]:
            logits = decoder.step(tokens[:, t])


def test_cache_gives_the_tokens_of_recompute(stack):
    # few tokens: recomputing gives every step a new shape, which compiling frameworks compile
    cached = stack.generate(PROMPTS, 8, temperature=0)
    again = stack.generate(PROMPTS, 8, temperature=0, use_cache=False)
    for a, b in zip(cached, again, strict=True):
        assert len(a) == 8 and a.dtype == np.int64
        np.testing.assert_array_equal(a, b)


def test_every_framework_gives_numpys_greedy_tokens(stack, reference):
    prompt = [[7, 3, 3, 50, 21, 8]]
    ours = stack.generate(prompt, 64, temperature=0)[0]
    np.testing.assert_array_equal(ours, reference.generate(prompt, 64, temperature=0)[0])


def test_each_row_of_a_padded_batch_gives_what_it_gives_alone(stack):
    batch = stack.generate(PROMPTS, 8, temperature=0)
    for p, row in zip(PROMPTS, batch, strict=True):
        np.testing.assert_array_equal(row, stack.generate([p], 8, temperature=0)[0])


def test_seeded_sampling(stack, reference):
    draw = lambda s, **kw: s.generate(PROMPTS[:2], 20, temperature=0.9, **kw)
    same = draw(stack, seed=5, top_k=20, top_p=0.95)
    for a, b in zip(same, draw(reference, seed=5, top_k=20, top_p=0.95), strict=True):
        np.testing.assert_array_equal(a, b)  # the same seed: the same tokens on every framework
    assert any((a != b).any() for a, b in zip(draw(stack, seed=5), draw(stack, seed=6), strict=True))
    greedy = stack.generate(PROMPTS[:2], 20, temperature=0)
    for kw in ({"top_k": 1}, {"top_p": 1e-9}):
        for a, b in zip(draw(stack, seed=1, **kw), greedy, strict=True):
            np.testing.assert_array_equal(a, b)


def test_stop_ids_end_a_row_and_tokens_stream_as_they_come(reference):
    full = reference.generate([PROMPTS[0]], 20, temperature=0)[0]
    stop = int(full[4])
    first = int(np.flatnonzero(full == stop)[0])
    np.testing.assert_array_equal(
        reference.generate([PROMPTS[0]], 20, temperature=0, stop_ids=[stop])[0], full[: first + 1]
    )

    seen = []

    class Enough(Exception):
        pass

    def on_token(row, token):
        seen.append((row, token))
        if len(seen) == 3:
            raise Enough  # generation is still under way when the third token arrives

    with pytest.raises(Enough):
        reference.generate([PROMPTS[0]], 20, temperature=0, on_token=on_token)
    assert seen == [(0, int(t)) for t in full[:3]]


def test_the_numbers_tokenizer_round_trips_counting_text():
    from sdk_core.model.data import counting_text

    tok = Tokenizer("numbers", 64)
    for row in counting_text(8, 32, 16)[0]:
        assert tok.encode(tok.decode(row.tolist())) == row.tolist()
    assert tok.encode("12 13 14") == [12, 13, 14] and tok.decode([15, 0]) == "15 0"
    assert Tokenizer("bytes", 300).decode(Tokenizer("bytes", 300).encode("héllo")) == "héllo"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, reference) -> str:
    path = str(tmp_path_factory.mktemp("gen") / "gpt.safetensors")
    reference.save(path, {"tokenizer": Tokenizer("numbers", 64).describe()})
    return path


def run(capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sdk_generate_prints_the_tokens_as_text(capsys, weights_file, reference):
    code, out, err = run(
        capsys,
        "generate",
        "--weights",
        weights_file,
        "--prompt",
        "12 13 14",
        "--temperature",
        "0",
        "--framework",
        "numpy",
        "--max-new-tokens",
        "10",
    )
    assert code == 0, err
    expected = reference.generate([[12, 13, 14]], 10, temperature=0)[0]
    assert out.strip() == " ".join(map(str, expected))
    code, out, err = run(
        capsys,
        "generate",
        "--weights",
        weights_file,
        "--prompt-ids",
        "12,13,14",
        "--temperature",
        "0",
        "--framework",
        "numpy",
        "--max-new-tokens",
        "10",
        "--json",
    )
    data = json.loads(out)
    assert data["ids"] == expected.tolist() and data["text"] == " ".join(map(str, expected))
    assert data["tokens_per_s"] > 0 and 0 < data["time_to_first_token_s"] <= data["seconds"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--prompt", ""], "prompt 0 is empty"),
        (["--prompt-ids", "3,64"], "token id 64 is outside the vocabulary [0, 64)"),
        (["--prompt", "3 99"], "'99' is not a token"),
        (["--prompt", "1 2", "--max-new-tokens", "79"], "exceed the model's context of 80"),
        (["--prompt", "1 2", "--top-p", "0"], "'top_p' must be a number in (0, 1]"),
        (["--prompt", "1 2", "--top-p", "1.5"], "'top_p' must be a number in (0, 1]"),
        (["--prompt", "1 2", "--temperature", "-1"], "'temperature' must be a number >= 0"),
    ],
)
def test_sdk_generate_refuses_bad_input_in_one_line(capsys, weights_file, args, fragment):
    code, _, err = run(capsys, "generate", "--weights", weights_file, "--framework", "numpy", *args)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("sdk: error: ") and fragment in err, err


def test_sdk_generate_refuses_a_model_that_is_no_decoder(capsys, tmp_path):
    path = str(tmp_path / "lenet.safetensors")
    Stack("numpy").build(zoo.lenet5()).save(path)
    code, _, err = run(capsys, "generate", "--weights", path, "--prompt-ids", "1,2", "--framework", "numpy")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "model 'lenet5' is not a decoder: it takes float32 inputs, not int64 token ids" in err


def test_a_framework_without_generate_is_refused_with_its_reason():
    stack = Stack("numpy").build(SPEC)
    info = stack.framework
    stack.framework = attrs.evolve(
        info, capabilities=("train", "infer"), refusals={"generate": "no key/value cache here yet"}
    )
    with pytest.raises(
        NotAvailableError, match="framework 'numpy' cannot generate tokens: no key/value cache here yet"
    ):
        stack.generate([[1, 2]], 3)


@pytest.mark.needs_framework("torch")
def test_sdk_train_on_counting_text_stores_the_tokenizer(tmp_path, capsys):
    out = str(tmp_path / "gpt.safetensors")
    code, _, err = run(
        capsys,
        "train",
        "--model",
        "gpt",
        "--data",
        "counting_text",
        "--framework",
        "torch",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--out",
        out,
        "--json",
    )
    assert code == 0, err
    assert json.loads(read_metadata(out)["tokenizer"]) == {"type": "numbers"}


def test_sdk_tune_finds_the_largest_decode_batch_in_a_budget():
    """`sdk tune --what batch-size --task generate`: the largest batch whose generation stays
    within the memory budget, confirmed by trials, and the fastest batch up to it."""
    import json as _json
    import subprocess as _subprocess
    import sys as _sys

    result = _subprocess.run(
        [_sys.executable, "-m", "sdk_core", "tune", "--what", "batch-size", "--task", "generate", "--model", "gpt",
         "--framework", "numpy", "--memory-budget", "600MiB", "--prompt-tokens", "8", "--new-tokens", "4", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = _json.loads(result.stdout)["batch_size"]
    fitting = [t["batch_size"] for t in found["trials"] if t["fits"]]
    failing = [t["batch_size"] for t in found["trials"] if not t["fits"]]
    assert found["largest"] == max(fitting) and all(b > found["largest"] for b in failing)
    assert all(t["peak_bytes"] <= found["limit_bytes"] for t in found["trials"] if t["fits"])
    assert 1 <= found["best"] <= found["largest"]
    wrong = _subprocess.run(
        [_sys.executable, "-m", "sdk_core", "tune", "--what", "lr", "--task", "generate", "--model", "gpt"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert wrong.returncode == 1 and "batch size only" in wrong.stderr
