"""Property-based fuzzing (hypothesis) of what users and files hand the SDK: model specs,
weights-file headers and ``fit`` / ``predict`` arguments. Whatever comes in, the outcome is a
result or the documented error type with one line of at most 300 characters, and memory stays
under a cap (nothing is allocated at the size a hostile input claims)."""

from __future__ import annotations

import json
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sdk_core
from sdk_core import ModelSpec, SdkError, SpecError, WeightsError
from sdk_core.model.spec import LAYER_TYPES
from sdk_core.model.weights import read_header

MEMORY_CAP = 64 * 2**20
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**9) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
layer_dicts = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(LAYER_TYPES)) | json_values},
    optional={
        k: json_values | st.integers(-3, 70)
        for k in (
            "units",
            "filters",
            "kernel_size",
            "stride",
            "padding",
            "pool_size",
            "rate",
            "eps",
            "num_heads",
            "vocab_size",
            "dim",
            "max_len",
            "bias",
            "causal",
        )
    },
)
spec_dicts = st.fixed_dictionaries(
    {
        "input_shape": st.lists(st.integers(-2, 40), max_size=4) | json_values,
        "layers": st.lists(layer_dicts, max_size=5),
    },
    optional={
        "name": json_values,
        "input_dtype": st.sampled_from(["float32", "int64"]) | json_values,
        "x": json_values,
    },
)


def assert_one_line(error: BaseException) -> None:
    text = str(error)
    assert "\n" not in text and 0 < len(text) <= 300, text


def under_cap(fn):
    tracemalloc.start()
    try:
        return fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MEMORY_CAP, f"peak {peak / 2**20:.0f} MiB"


@FUZZ
@given(spec_dicts)
def test_fuzzed_specs_build_or_fail_with_one_spec_error(data):
    try:
        spec = under_cap(lambda: ModelSpec.from_json(json.dumps(data)))
    except SpecError as exc:
        assert_one_line(exc)
    else:
        assert ModelSpec.from_json(spec.to_json()) == spec  # what is accepted round-trips


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_as_a_spec_file(raw):
    try:
        under_cap(lambda: ModelSpec.from_json(raw))
    except SpecError as exc:
        assert_one_line(exc)


tensor_entries = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "F64", "I64", "U8", "BOOL", "F16", "XX"]) | json_values,
        "shape": st.lists(st.integers(0, 10**12), max_size=4) | json_values,
        "data_offsets": st.lists(st.integers(0, 10**12), min_size=2, max_size=2) | json_values,
    }
)
headers = st.dictionaries(st.text(min_size=1, max_size=10), tensor_entries, max_size=3).map(
    lambda d: {**d, "__metadata__": {"spec": ModelSpec(input_shape=(3,), layers=[sdk_core.Dense(2)]).to_json()}}
)


@FUZZ
@given(headers, st.integers(0, 64), st.booleans())
def test_hostile_weights_headers_never_allocate_what_they_claim(tmp_path_factory, header, payload, lie_about_length):
    text = json.dumps(header).encode()
    length = len(text) + (10**9 if lie_about_length else 0)
    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    path.write_bytes(struct.pack("<Q", length) + text + b"\0" * payload)
    try:
        shapes, meta = under_cap(lambda: read_header(path))
        spec = ModelSpec.from_json(meta["spec"])
        spec.check_shapes(shapes)
    except (WeightsError, SpecError) as exc:
        assert_one_line(exc)


arguments = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=True), st.text(max_size=3), st.just([1])
)


@pytest.mark.needs_framework("numpy")
@FUZZ
@given(
    batch_size=arguments,
    epochs=arguments,
    seed=arguments,
    split=arguments,
    rows=st.integers(0, 12),
    poison=st.sampled_from([None, np.nan, np.inf, 1e30]),
)
def test_fuzzed_fit_and_predict_arguments(batch_size, epochs, seed, split, rows, poison):
    spec = ModelSpec(input_shape=(4,), layers=[sdk_core.Dense(3)])
    stack = sdk_core.Stack("numpy").build(spec)
    x = np.ones((rows, 4), np.float32)
    if poison is not None and rows:
        x[rows // 2, 1] = poison
    y = np.zeros(rows, np.int64)
    try:
        under_cap(lambda: stack.fit(x, y, epochs=epochs, batch_size=batch_size, seed=seed, validation_split=split))
    except SdkError as exc:
        assert_one_line(exc)
    try:
        out = stack.predict(x, batch_size=batch_size if batch_size is not None else 4)
        assert out.shape == (rows, 3)
    except SdkError as exc:
        assert_one_line(exc)
    for weights in stack.get_weights().values():
        assert np.isfinite(weights).all()
