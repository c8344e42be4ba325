"""The Deep-Compression pipeline: prune (gradually, fine-tuning with the masks held), share
weights (k-means, optionally fine-tuning the centroids) or quantize to int8, then code the
file; with a report of what each layer became and the accuracy before and after."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import SdkError
from ..model.optim import Optimizer
from ..runtime.stack import Stack
from .pruning import FINETUNE_LR, Schedule, check_ratio, prune, prune_gradually, sparsity
from .quantize import quantize
from .sharing import share_weights
from .storage import load, save_compressed
from .structured import latency_ratio, prune_structured

DEFAULT_PRUNE = 0.92
DEFAULT_EPOCHS = 16


def compress(
    stack: Stack,
    data: tuple[Any, Any, Any, Any],
    out: str | os.PathLike[str],
    amount: float | None = DEFAULT_PRUNE,
    schedule: Schedule | None = None,
    scope: str = "global",
    ratios: Mapping[str, float] | None = None,
    keep: Iterable[str] = (),
    structured: float | None = None,
    share_bits: int | Mapping[str, int] | bool | None = None,
    quantize_to: str | None = None,
    calibration: str = "minmax",
    finetune_epochs: int = DEFAULT_EPOCHS,
    centroid_epochs: int = 1,
    reference_bytes: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compress ``stack``'s trained model into ``out`` (``.sdkz``) and report on it.

    ``data`` is ``(x_train, y_train, x_test, y_test)``. Steps, each skipped when turned off:
    structured pruning (``structured`` of the channels), magnitude pruning to ``amount``
    (``schedule`` for a gradual one; by default a polynomial schedule over two thirds of
    ``finetune_epochs``), weight sharing (``share_bits``; ``False`` turns it off) or int8
    quantization (``quantize_to="int8"``, calibrated by ``calibration``), coding. Accuracy
    after is that of the written file read back (and, for int8, with int8 activations
    simulated). ``reference_bytes`` is the size the ratio is taken against (default: the
    model's float32 safetensors size)."""
    say = log or (lambda text: None)
    x, y, x_test, y_test = data
    if quantize_to is not None and share_bits not in (None, False):
        raise SdkError("choose weight sharing or int8 quantization, not both")
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise SdkError(f"'finetune_epochs' must be an int >= 0 (got {finetune_epochs!r})")
    if amount is not None:
        check_ratio(amount)
    spec = stack._need_model()
    before_weights = stack.get_weights()
    accuracy_before = stack.evaluate(x_test, y_test)["accuracy"]
    say(f"{spec.name or 'model'}: {spec.param_count():,} parameters, accuracy {accuracy_before:.4f} before")
    report: dict[str, Any] = {"framework": stack.framework.name, "accuracy_before": accuracy_before}
    if structured:
        original = stack
        stack = prune_structured(stack, structured)
        ratio = latency_ratio(stack, original, np.asarray(x_test[:256]))
        report["structured"] = {
            "amount": structured,
            "params_before": spec.param_count(),
            "params_after": stack._need_model().param_count(),
            "latency_ratio": {"median": ratio[0], "min": ratio[1], "max": ratio[2]},
        }
        say(f"structured pruning: {report['structured']['params_after']:,} parameters, latency ×{ratio[0]:.2f}")
    optimizer = Optimizer("adam", lr=FINETUNE_LR)
    if amount:
        if finetune_epochs:
            schedule = schedule or Schedule(final=amount, steps=max(1, (2 * finetune_epochs) // 3))
            prune_gradually(
                stack,
                x,
                y,
                schedule,
                finetune_epochs,
                scope,
                ratios,
                keep,
                optimizer,
                on_epoch=lambda e, s, loss: say(
                    f"fine-tune epoch {e + 1}/{finetune_epochs}: sparsity {s:.3f}, loss {loss:.4f}"
                ),
            )
        else:
            prune(stack, amount, scope, ratios, keep)
    elif structured and finetune_epochs:
        stack.fit(x, y, epochs=finetune_epochs, optimizer=optimizer)
    report["sparsity"] = sparsity(stack.masks or {})
    report["accuracy_pruned"] = stack.evaluate(x_test, y_test)["accuracy"]
    say(f"pruned: sparsity {report['sparsity']:.3f}, accuracy {report['accuracy_pruned']:.4f}")
    books, quantized = None, None
    if quantize_to is not None:
        quantized = quantize(stack, x, quantize_to, calibration)
        say(f"int8: weights per channel, activations calibrated by {calibration}")
    elif share_bits is not False:
        books = share_weights(stack, None if share_bits is True else share_bits, x, y, finetune_epochs=centroid_epochs)
        say("weight sharing: " + ", ".join(f"{n} {b.bits} bits" for n, b in books.items()))
    sizes = save_compressed(stack, out, books, quantized, {"accuracy_before": f"{accuracy_before:.6f}"})
    served = load(out, stack.framework.name, stack.device.id, manager=stack.manager)
    accuracy_after = served.evaluate(x_test, y_test)["accuracy"]
    if quantized is not None:
        report["accuracy_weights_only"] = accuracy_after
        accuracy_after = quantized.evaluate(x_test, y_test)["accuracy"]
    reference = reference_bytes or sizes["dense_bytes"]
    report.update(
        {
            "accuracy_after": accuracy_after,
            "bytes_before": reference,
            "bytes_after": sizes["bytes"],
            "compression_ratio": reference / sizes["bytes"],
            "layers": sizes["layers"],
            "header_bytes": sizes["header_bytes"],
            "coders": sizes["coders"],
            "out": os.fspath(out),
        }
    )
    report["_weights"] = (before_weights, served.get_weights())
    return report
