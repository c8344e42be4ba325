"""Choosing a (framework, device) pair: the policies behind ``Stack.auto()``.

- ``accelerator`` (default): any accelerator before the cpu; among accelerators the highest
  known float32 peak, then the most free memory; then the framework with the highest priority.
- ``memory``: like ``accelerator``, but only devices whose free memory holds the training
  footprint estimated for the spec and batch size (:func:`~sdk_core.model.estimate.training_bytes`).
- ``fastest``: build the spec on every usable pair and time a few training steps (for
  inference, predict calls); the pair with the shortest median call wins (a quick measured
  probe, seconds per pair).

Inference-only frameworks (no ``train`` capability, such as onnxruntime) are candidates only
when the task is ``infer``.

``strict`` fails instead of falling back to the cpu when no accelerator qualifies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import NotAvailableError, SdkError
from ..plugins.manager import PluginManager, get_manager
from ..plugins.records import DeviceInfo, FrameworkInfo

if TYPE_CHECKING:  # imported where used: `sdk devices` and `sdk plugins` never need them
    from ..model.spec import ModelSpec

POLICIES = ("accelerator", "memory", "fastest")
TASKS = ("train", "infer")
Pair = tuple[FrameworkInfo, DeviceInfo]
StepTimer = Callable[[FrameworkInfo, DeviceInfo, "ModelSpec", int], float]
"""``(framework, device, spec, batch_size) -> seconds per training step`` (or predict call):
what ``fastest`` measures; :class:`~sdk_core.runtime.stack.Stack` provides it."""


def usable_stacks(
    manager: PluginManager | None = None, devices: list[DeviceInfo] | None = None, task: str = "infer"
) -> list[Pair]:
    """Every (installed framework, device) pair the framework can drive, for ``task`` (``train``
    leaves out inference-only frameworks), best first by the ``accelerator`` policy (the
    process-wide manager and every probed device by default)."""
    manager = manager or get_manager()
    pairs = [
        (fw, dev)
        for fw in manager.frameworks().values()
        if fw.installed and (fw.trains or task != "train")
        for dev in (manager.devices() if devices is None else devices)
        if dev.kind in fw.device_kinds
    ]
    return sorted(
        pairs,
        key=lambda p: (
            p[1].kind == "cpu",
            -p[1].peak_flops.get("float32", 0.0),
            -(p[1].memory_free or 0),
            -p[0].priority,
            p[1].index,
        ),
    )


def choose(
    manager: PluginManager,
    policy: str = "accelerator",
    spec: ModelSpec | None = None,
    batch_size: int = 32,
    device: str | None = None,
    strict: bool = False,
    time_step: StepTimer | None = None,
    task: str = "train",
) -> Pair:
    """The pair ``Stack.auto()`` uses for ``task``; see the module docstring for the policies.

    ``time_step`` times a training step (or predict call) on a pair; the ``fastest`` policy
    needs it."""
    from ..model import zoo
    from ..model.estimate import training_bytes

    if policy not in POLICIES:
        raise SdkError(f"'policy' must be one of {', '.join(POLICIES)} (got {policy!r})")
    if task not in TASKS:
        raise SdkError(f"'task' must be one of {', '.join(TASKS)} (got {task!r})")
    if device is not None:  # only that device: `--device cpu` waits for no accelerator probe
        wanted = manager.device(device)
        pairs = usable_stacks(manager, [wanted], task)
        if not pairs:
            raise NotAvailableError(
                f"no installed framework drives {wanted.id}" + (" for training" if task == "train" else "")
            )
    else:
        pairs = usable_stacks(manager, task=task)
    if not pairs:
        raise NotAvailableError(
            "no usable framework: install a framework plugin (pip install sdk-numpy for the default)"
        )
    if strict:
        pairs = [p for p in pairs if p[1].kind != "cpu"]
        if not pairs:
            raise NotAvailableError(
                "strict: no accelerator is usable by an installed framework (only the cpu was found)"
            )
    spec = spec or zoo.mlp()
    if policy == "memory":
        need = training_bytes(spec, batch_size)
        fits = [p for p in pairs if p[1].memory_free is None or p[1].memory_free >= need]
        if not fits:
            raise NotAvailableError(
                f"no device has {need / 2**20:.0f} MiB free for this model at batch size {batch_size}"
            )
        pairs = fits
    if policy == "fastest" and len(pairs) > 1:
        if time_step is None:
            raise SdkError("the 'fastest' policy needs a step timer (use Stack.auto)")
        timed = [(time_step(fw, dev, spec, batch_size), i) for i, (fw, dev) in enumerate(pairs)]
        return pairs[min(timed)[1]]
    return pairs[0]
