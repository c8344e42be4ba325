"""Weights files: safetensors, atomic writes, clear errors on missing or corrupt files."""

import numpy as np
import pytest

from sdk_core import WeightsError, load_weights, save_weights
from sdk_core.model.files import atomic_write


def test_round_trip_with_metadata(tmp_path):
    path = tmp_path / "w.safetensors"
    weights = {"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3).T, "0.bias": np.ones(2)}
    save_weights(path, weights, {"framework": "numpy"})
    loaded, meta = load_weights(path)
    assert meta == {"format": "sdk_core/1", "framework": "numpy"}
    assert set(loaded) == set(weights)
    for k in weights:
        assert loaded[k].dtype == weights[k].dtype
        np.testing.assert_array_equal(loaded[k], weights[k])
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(WeightsError, match=r"weights file '.*nothing\.safetensors' does not exist"):
        load_weights(tmp_path / "nothing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(WeightsError, match="is not a valid safetensors file"):
        load_weights(bad)
    pickle_like = tmp_path / "model.safetensors"
    pickle_like.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    with pytest.raises(WeightsError, match="is not a valid safetensors file"):
        load_weights(pickle_like)


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights(path, {"a": np.zeros(3, np.float32)})
    before = path.read_bytes()

    class Exploding(dict):
        def items(self):
            raise KeyboardInterrupt  # an interruption in the middle of a save

    with pytest.raises(KeyboardInterrupt):
        save_weights(path, Exploding(a=1))
    assert path.read_bytes() == before

    with pytest.raises(TypeError):  # the write itself fails half-way
        atomic_write(path, None)  # type: ignore[arg-type]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_writing_into_a_missing_directory_is_one_clear_error(tmp_path):
    with pytest.raises(WeightsError, match=r"directory '.*missing' does not exist"):
        save_weights(tmp_path / "missing" / "w.safetensors", {"a": np.zeros(1)})
