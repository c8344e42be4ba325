"""Memory checks before allocation: the demand of a spec is estimated from its shapes
(:mod:`sdk_core.model.estimate`) and compared with the memory the device reports, so that a
model or batch that cannot fit is refused with one clear line instead of a ``MemoryError``
(or a swapping machine) after minutes."""

from __future__ import annotations

from ..errors import NotAvailableError
from ..model.estimate import inference_bytes, training_bytes
from ..model.files import size_text
from ..model.spec import ModelSpec
from ..plugins.records import DeviceInfo

BYTES_PER_VALUE = {"float32": 4, "float64": 8}


def need_bytes(spec: ModelSpec, batch_size: int, dtype: str, what: str) -> int:
    """The bytes ``what`` ("the model", "training", "inference") on ``batch_size`` samples
    needs by the estimate. Building "the model" counts training on ``batch_size`` samples,
    which covers what building allocates: the native model and the initial weights, each
    once in ``dtype`` (:meth:`ModelSpec.init_weights` draws no float64 copy)."""
    per_value = BYTES_PER_VALUE.get(dtype, 4)
    if what == "inference":
        return inference_bytes(spec, batch_size, per_value)
    return training_bytes(spec, batch_size, per_value)


def check_fits(spec: ModelSpec, device: DeviceInfo, batch_size: int, dtype: str, what: str) -> None:
    """Raise :class:`NotAvailableError` when ``what`` ("the model", "training", "inference")
    on ``batch_size`` samples needs more than the device's total memory. A device that does not
    report its memory is not checked."""
    if device.memory_total is None:
        return
    need = need_bytes(spec, batch_size, dtype, what)
    if need > device.memory_total:
        hint = "a smaller model" if what == "the model" else "a smaller batch size or model"
        raise NotAvailableError(
            f"{what} needs about {size_text(need)} of memory at batch size {batch_size} "
            f"({spec.param_count(trainable_only=False):,} parameters); "
            f"{device.id} has {size_text(device.memory_total)} "
            f"in all: use {hint}"
        )
