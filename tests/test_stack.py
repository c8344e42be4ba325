"""The Stack API end to end on the NumPy plugin (the embedded default)."""

import itertools

import numpy as np
import pytest

import sdk_core
from sdk_core import Optimizer, SpecError, Stack, WeightsError, zoo

pytest.importorskip("sdk_numpy", reason="the Stack tests need the sdk-numpy plugin")


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    return sdk_core.digits(image_size=None)


def test_fit_evaluate_predict_and_history(digits):
    x_train, y_train, x_test, y_test = digits
    stack = Stack("numpy").build(zoo.mlp(), seed=0)
    history = stack.fit(
        x_train,
        y_train,
        epochs=3,
        batch_size=64,
        optimizer=Optimizer("adam", lr=3e-3),
        validation_data=(x_test, y_test),
    )
    assert len(history.loss) == len(history.val_loss) == len(history.val_accuracy) == 3
    assert history.loss[2] < history.loss[0]
    result = stack.evaluate(x_test, y_test)
    assert result["accuracy"] > 0.9 and result["accuracy"] == pytest.approx(history.val_accuracy[-1])
    logits = stack.predict(x_test)
    assert logits.shape == (len(x_test), 10)
    assert np.mean(logits.argmax(1) == y_test) == pytest.approx(result["accuracy"])


def test_same_seed_same_result_and_validation_split(digits):
    x, y = digits[0][:300], digits[1][:300]
    runs = [Stack("numpy").build(zoo.mlp(), seed=3) for _ in range(2)]
    histories = [s.fit(x, y, epochs=2, validation_split=0.2, seed=7) for s in runs]
    assert histories[0].loss == histories[1].loss and len(histories[0].val_loss) == 2
    a, b = (s.get_weights() for s in runs)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_save_load_round_trip_and_heterogeneous_to(tmp_path, digits):
    x_train, y_train, x_test, _ = digits
    stack = Stack("numpy").build(zoo.mlp(), seed=1)
    stack.fit(x_train[:200], y_train[:200], epochs=1)
    path = tmp_path / "mlp.safetensors"
    stack.save(path)
    restored = Stack("numpy").load(path)
    assert restored.spec == stack.spec
    np.testing.assert_array_equal(restored.predict(x_test), stack.predict(x_test))
    moved = stack.to(device="cpu")
    np.testing.assert_array_equal(moved.predict(x_test), stack.predict(x_test))
    assert sdk_core.load_spec(path) == stack.spec


def test_bad_input_is_one_clear_error(tmp_path, digits):
    x_train, y_train, _, _ = digits
    stack = Stack("numpy").build(zoo.mlp())
    with pytest.raises(SpecError, match=r"input has shape \(4, 63\), the model needs \(batch, 64\)"):
        stack.predict(np.zeros((4, 63), np.float32))
    with pytest.raises(SpecError, match=r"targets have shape \(10, 2\), the model needs \(10,\)"):
        stack.fit(x_train[:10], np.zeros((10, 2), np.int64))
    with pytest.raises(SpecError, match=r"class ids must lie in \[0, 10\)"):
        stack.fit(x_train[:10], np.full(10, 12))
    with pytest.raises(sdk_core.SdkError, match="'epochs' must be a positive int"):
        stack.fit(x_train[:10], y_train[:10], epochs=0)
    with pytest.raises(sdk_core.NotAvailableError, match="unknown framework 'caffe'"):
        Stack("caffe")
    other = Stack("numpy").build(zoo.mlp(hidden=(32,)))
    path = tmp_path / "small.safetensors"
    other.save(path)
    before = stack.get_weights()
    with pytest.raises(WeightsError, match=r"do not match the model|has shape"):
        stack.load(path)
    after = stack.get_weights()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    with pytest.raises(sdk_core.SdkError, match="no model: call build"):
        Stack("numpy").predict(x_train)


def test_full_batch_gradient_descent_decreases_the_loss(digits):
    x, y = digits[0][:256], digits[1][:256]
    stack = Stack("numpy").build(zoo.mlp(), seed=0)
    history = stack.fit(x, y, epochs=5, batch_size=None, optimizer=Optimizer("sgd", lr=0.5))
    assert all(b < a for a, b in itertools.pairwise(history.loss))
