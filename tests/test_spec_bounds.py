"""Every float and int hyperparameter of a layer or an optimizer is bounded, and NaN, infinity
and ints too large for a float are refused: one line naming the layer and the field, the same
from Python, from a spec's JSON and from the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk_core.errors import SpecError
from sdk_core.model import spec as S
from sdk_core.model.optim import Optimizer, Schedule

HUGE = 10**400  # an int no float holds
NON_FINITE = [math.nan, math.inf, -math.inf, HUGE]

# (layer type, the other fields it needs, input shape, field, bad values)
LAYER_CASES = [
    ("layernorm", {}, [3, 8], "eps", [2, 1e18, 0.5, 0, -1e-5, *NON_FINITE, "1e-5", True]),
    ("batchnorm", {}, [8], "eps", [2, 1e18, 0, -1e-5, *NON_FINITE]),
    ("batchnorm", {}, [8], "momentum", [1, 1.5, -0.1, *NON_FINITE]),
    ("dropout", {}, [8], "rate", [1, 1.5, -0.1, *NON_FINITE]),
    ("transformer_block", {"num_heads": 2}, [3, 8], "dropout", [1, -0.5, *NON_FINITE]),
    ("transformer_block", {"num_heads": 2}, [3, 8], "mlp_ratio", [0, -1, 1.5, math.nan]),
    ("transformer_block", {}, [3, 8], "num_heads", [0, -2, 2.0, math.inf]),
    ("attention", {}, [3, 8], "num_heads", [0, -2, math.nan]),
    ("dense", {}, [8], "units", [0, -1, 1.5, math.inf]),
    ("conv2d", {"filters": 2}, [1, 6, 6], "kernel_size", [0, -3, math.nan]),
    ("conv2d", {"kernel_size": 3}, [1, 6, 6], "filters", [0, math.inf]),
    ("conv2d", {"filters": 2, "kernel_size": 3}, [1, 6, 6], "stride", [0, math.nan]),
    ("conv2d", {"filters": 2, "kernel_size": 3}, [1, 6, 6], "padding", [-1, math.nan, "valid"]),
    ("max_pool2d", {}, [1, 6, 6], "pool_size", [0, math.inf]),
    ("avg_pool2d", {}, [1, 6, 6], "stride", [0, -1, math.nan]),
    ("embedding", {"dim": 4}, [3], "vocab_size", [0, math.nan]),
    ("embedding", {"vocab_size": 10, "dim": 4}, [3], "max_len", [-1, math.inf]),
]


def spec_dict(kind, fields, shape, field, value):
    layers = [{"type": kind, **fields, field: value}]
    if kind == "embedding":
        return {"input_shape": shape, "input_dtype": "int64", "layers": layers}
    return {"input_shape": shape, "layers": [{"type": "relu"}, *layers]}


@pytest.mark.parametrize(
    "kind, fields, shape, field, value",
    [(k, f, sh, field, v) for k, f, sh, field, values in LAYER_CASES for v in values],
    ids=lambda v: repr(v)[:12] if not isinstance(v, (dict, list)) else None,
)
def test_out_of_range_layer_field_is_refused_naming_layer_and_field(kind, fields, shape, field, value):
    data = spec_dict(kind, fields, shape, field, value)
    index = len(data["layers"]) - 1
    with pytest.raises(SpecError) as caught:
        S.ModelSpec.from_dict(data)
    assert str(caught.value).startswith(f"layer {index} ({kind}): '{field}' must be ")
    with pytest.raises(SpecError, match=f"^'{field}' must be "):  # built in Python: the same rule
        S.LAYER_TYPES[kind](**{**fields, field: value})


def test_spec_json_gives_the_same_error_nan_and_infinity_included():
    for text in ('"eps": 2', '"eps": NaN', '"eps": Infinity', '"eps": 1e999', '"eps": ' + "9" * 400):
        source = '{"input_shape": [3, 8], "layers": [{"type": "layernorm", ' + text + "}]}"
        with pytest.raises(SpecError, match=r"^layer 0 \(layernorm\): 'eps' must be a finite number > 0.0 and <= 0.1"):
            S.ModelSpec.from_json(source)
    for eps in (1e-12, 1e-5, 0.05, 0.1):  # the bound itself is taken
        source = '{"input_shape": [3, 8], "layers": [{"type": "layernorm", "eps": ' + repr(eps) + "}]}"
        assert S.ModelSpec.from_json(source).layers[0].eps == eps


OPTIMIZER_CASES = [
    ("lr", [0, -1e-3, *NON_FINITE]),
    ("momentum", [1, 1.5, -0.1, *NON_FINITE]),
    ("beta1", [1, -0.1, *NON_FINITE]),
    ("beta2", [0, 1, *NON_FINITE]),
    ("rho", [0, 1, *NON_FINITE]),
    ("eps", [-1e-8, *NON_FINITE]),
    ("weight_decay", [-0.1, *NON_FINITE]),
]


@pytest.mark.parametrize(
    "field, value", [(f, v) for f, values in OPTIMIZER_CASES for v in values], ids=lambda v: repr(v)[:12]
)
def test_out_of_range_optimizer_field_is_refused_naming_it(field, value):
    with pytest.raises(SpecError, match=f"^'{field}' must be a finite number"):
        Optimizer("adam", **{field: value})


@pytest.mark.parametrize(
    "field, value",
    [("gamma", HUGE), ("gamma", math.nan), ("min_lr", HUGE), ("min_lr", -1)],
    ids=["gamma-huge", "gamma-nan", "min_lr-huge", "min_lr-negative"],
)
def test_out_of_range_schedule_field_is_refused_naming_it(field, value):
    with pytest.raises(SpecError, match=f"^'{field}' must be a finite number"):
        Schedule("exponential", **{field: value})


@pytest.mark.needs_framework("numpy")
def test_cli_train_refuses_them_in_one_line(tmp_path):
    spec = tmp_path / "spec.json"
    layers = [{"type": "layernorm", "eps": 1e18}, {"type": "dense", "units": 10}]
    spec.write_text(json.dumps({"input_shape": [64], "layers": layers}))
    for args, message in [
        (("--model", spec), "layer 0 (layernorm): 'eps' must be a finite number > 0.0 and <= 0.1 (got 1e+18)"),
        (("--model", "mlp", "--lr", "nan"), "'lr' must be a finite number > 0.0 (got nan)"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "sdk_core", "train", "--framework", "numpy", "--epochs", "1", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1, result.stderr
        assert result.stderr == f"sdk: error: {message}\n"


OUT_OF_RANGE_EPS = st.one_of(
    st.floats(max_value=0.0),
    st.floats(min_value=S.MAX_EPS, exclude_min=True),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=1),
    st.integers(max_value=0),
)
OUT_OF_RANGE_RATE = st.one_of(
    st.floats(max_value=0.0, exclude_max=True),
    st.floats(min_value=1.0),
    st.sampled_from([math.nan, math.inf]),
    st.integers(min_value=1),
    st.integers(max_value=-1),
)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["layernorm", "batchnorm"]),
    eps=OUT_OF_RANGE_EPS,
    rate=OUT_OF_RANGE_RATE,
    which=st.sampled_from(["eps", "rate"]),
)
def test_random_out_of_range_eps_or_rate_is_refused_at_construction(kind, eps, rate, which):
    if which == "eps":
        layer, field = {"type": kind, "eps": eps}, "eps"
    else:
        layer, field = {"type": "dropout", "rate": rate}, "rate"
    data = {"input_shape": [8], "layers": [layer]}
    with pytest.raises(SpecError, match=f"^layer 0 \\({layer['type']}\\): '{field}' must be "):
        S.ModelSpec.from_dict(data)
