"""Hook specifications: every extension point of sdk_core.

A plugin is a module (found through the ``sdk_core`` entry-point group) whose functions are
marked with ``sdk_core.hookimpl`` and named after these specs. It also declares
``SDK_CORE_API = 1``, the core API version it was written against.

"firstresult" hooks ask "who handles this": a plugin returns ``None`` when the request names
another framework, and the first non-``None`` answer wins. The other hooks collect one answer
from every plugin that implements them. The core calls a hook once to get a callable (a
training step, a predict function) and then calls that callable in its loops.

Failures are the plugin's alone: any exception a hook raises (``SystemExit`` included), or a
return value of the wrong type, marks that plugin failed with the hook named, and the others
keep working. The exception is :class:`~sdk_core.errors.NotAvailableError`, raised by a
framework hook for a request this machine cannot serve (a backend that is not installed, with
``strict``): it reaches the user as it is. The hooks that describe and probe (``sdk_framework_info``,
``sdk_probe_devices``, ``sdk_read_memory``, ``sdk_reset_peak_memory``, ``sdk_read_power``,
``sdk_add_commands``) run within a deadline (``SDK_CORE_HOOK_TIMEOUT``, 5 seconds by default);
one that does not answer in time is reported as timed out. A function named like a hook but
not marked ``@hookimpl`` is ignored with a warning.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pluggy

from .records import DeviceInfo, FrameworkInfo, MemoryReading, PowerReading

if TYPE_CHECKING:
    from ..model.optim import OptimizerState
    from .requests import (
        AllReduceRequest,
        BuildRequest,
        DecodeRequest,
        DistributedRequest,
        OptimizerStateRequest,
        PredictRequest,
        QuantizeRequest,
        StepRequest,
        WeightsRequest,
    )

hookspec = pluggy.HookspecMarker("sdk_core")


@hookspec
def sdk_framework_info() -> FrameworkInfo:
    """Describe the framework this plugin drives (framework plugins only).

    Must not import the framework: read its version from the installed distribution
    (``sdk_core.plugins.discovery.version``).

    :return: the plugin's :class:`FrameworkInfo`.
    Collected from every plugin.
    """


@hookspec
def sdk_probe_devices() -> list[DeviceInfo]:
    """Report the devices this plugin finds on the machine (accelerator plugins, built-in cpu).

    Must not import a deep-learning framework: use the vendor's management library, its tools
    or the operating system. A machine without the hardware gives an empty list, not an error.

    :return: a list of :class:`DeviceInfo`, possibly empty.
    Collected from every plugin.
    """


@hookspec(firstresult=True)
def sdk_build_model(request: BuildRequest) -> Any:
    """Build the native model for ``request.spec`` on ``request.device``.

    The core sets the canonical initial weights right after, through ``sdk_set_weights``.

    :param request: framework name, spec, device, dtype and seed.
    :return: the framework's model object, or ``None`` if ``request.framework`` is not yours.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_make_train_step(request: StepRequest) -> Callable[[np.ndarray, np.ndarray], Any] | None:
    """Compile one training step for ``request.model`` with the given loss and optimizer.

    The returned ``step(x, y)`` takes numpy arrays (a batch of inputs and targets), runs the
    forward pass in training mode, the backward pass and one optimizer update (following the
    optimizer's schedule; the step counts its own updates), updates the model in place and
    returns the batch loss as anything ``float()`` accepts (a device scalar is fine: the core
    converts it lazily). Called once; the core calls ``step`` for every batch.

    :param request: framework, model, spec, device, loss name, :class:`Optimizer`, seed.
    :return: the step callable, or ``None`` if ``request.framework`` is not yours.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_make_predict(request: PredictRequest) -> Callable[[np.ndarray], np.ndarray] | None:
    """Return ``predict(x) -> numpy array`` running ``request.model`` in inference mode.

    Dropout is off and batch normalization uses running statistics. ``predict`` must see
    weights changed later by a training step or ``sdk_set_weights``.

    :param request: framework, model, spec and device.
    :return: the predict callable, or ``None`` if ``request.framework`` is not yours.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_make_decoder(request: DecodeRequest) -> Any:
    """Return a decoder that generates with a key/value cache (plugins declaring the
    ``generate`` capability; the core refuses the others before calling).

    The decoder has two methods, each returning float32 numpy logits ``(batch, vocab)`` of the
    last position of every row; the core samples from them:

    - ``prefill(ids, lengths)``: ``ids`` int64 ``(batch, T)`` hold the prompts left-padded
      (row ``b``'s tokens are ``ids[b, T - lengths[b]:]``, pad slots hold 0). Resets the cache
      and fills its first ``T`` slots. The token in slot ``s`` of row ``b`` has position
      ``s - (T - lengths[b])``; pad slots are never attended to, so a row gives the logits it
      gives alone.
    - ``step(ids)``: ``ids`` int64 ``(batch,)``, one new token per row, written to the next
      slot (``capacity`` slots in all); attends to the row's cached keys and values.

    Prefill and step are separate compiled steps where the framework compiles (one jitted
    step with ``lax.dynamic_update_slice``, a ``tf.function``, ...), shaped so that decoding
    does not recompile per token. Each logit agrees within 1e-4 with recomputing the whole
    sequence through ``sdk_make_predict``'s computation. The decoder reads the model's current
    weights when it is made.

    :param request: framework, model, spec, device, batch and capacity.
    :return: the decoder, or ``None`` if ``request.framework`` is not yours.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_quantize_model(request: QuantizeRequest) -> Any:
    """Make an int8 inference model from ``request.model`` and its current weights.

    Only for plugins whose :class:`FrameworkInfo` lists the ``int8`` capability; the core
    refuses the others before calling. The new model answers ``sdk_make_predict``,
    ``sdk_get_weights`` (the float weights it was made from) and ``sdk_serialize_model``; it
    is never trained.

    :param request: framework, model, spec, device, calibration inputs, calibration method
        and whether weights are quantized per output channel.
    :return: the int8 model object, or ``None`` if ``request.framework`` is not yours.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_serialize_model(request: WeightsRequest) -> bytes | None:
    """The model as the file the framework runs it from (an ONNX model for onnxruntime), for
    reporting its size and writing it out.

    :param request: framework, model and spec (``weights`` is ``None``).
    :return: the file's bytes, or ``None`` if ``request.framework`` is not yours or the
        framework keeps no such file (the canonical weights are the model's file then).
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_init_distributed(request: DistributedRequest) -> bool | None:
    """Join the data-parallel job ``request.world`` with the framework's own engine
    (``torch.distributed``, ``jax.distributed``, ``tf.distribute``, MindSpore's
    ``communication``): rendezvous at rank 0's address and port (a coordinator of the
    framework's own at ``world.coordinator_port``), with every collective bounded by
    ``world.timeout``. The core calls it once per process, before the first data-parallel
    step. Only for plugins declaring the ``data_parallel`` capability.

    :param request: framework, device and world.
    :return: ``True`` when joined, or ``None`` if ``request.framework`` is not yours.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_all_reduce(request: AllReduceRequest) -> Any:
    """Sum ``request.values`` (a small float64 numpy array: validation sums, sample counts)
    over every rank of the job, with the framework's own collectives.

    :param request: framework and values.
    :return: the sums as a numpy array, or ``None`` if ``request.framework`` is not yours.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_get_weights(request: WeightsRequest) -> dict[str, np.ndarray] | None:
    """Read the model's weights in the canonical layout (see :mod:`sdk_core.model.spec`).

    :param request: framework, model and spec (``weights`` is ``None``).
    :return: ``{canonical name: numpy array}`` with every name of ``spec.layout()``, or
        ``None`` if ``request.framework`` is not yours. The arrays are the caller's: no later
        training step may change them (``fit`` keeps them to go back to if training
        diverges) and changing them must not reach the model; copy where your framework
        would hand out a view of its own buffer.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_set_weights(request: WeightsRequest) -> bool | None:
    """Write canonical weights (already checked against the layout) into the model in place.

    :param request: framework, model, spec and ``weights`` (name -> numpy array).
    :return: ``True`` when done, or ``None`` if ``request.framework`` is not yours.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_get_optimizer_state(request: OptimizerStateRequest) -> OptimizerState | None:
    """Read the state of the optimizer inside ``request.step`` in the canonical layout.

    Slots and their names are :data:`sdk_core.model.optim.STATE_SLOTS`; each holds one numpy
    array per trainable weight, named and shaped (axis order included) as the canonical
    weight. ``step`` is the number of updates done. Used for checkpoints that resume in any
    framework; a plugin without it cannot checkpoint (the core says so).

    :param request: framework, model, spec, optimizer and the step callable.
    :return: an :class:`OptimizerState`, or ``None`` if ``request.framework`` is not yours.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_set_optimizer_state(request: OptimizerStateRequest) -> bool | None:
    """Make the optimizer inside ``request.step`` continue from ``request.state`` (already
    checked against the optimizer's slots and the weights' shapes): the next update is the one
    numbered ``state.step``, with the schedule and bias corrections that go with it.

    :param request: framework, model, spec, optimizer, the step callable and the state.
    :return: ``True`` when done, or ``None`` if ``request.framework`` is not yours.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_read_memory(device: DeviceInfo) -> MemoryReading | None:
    """Read memory use on ``device`` (host RSS for the cpu, device memory for accelerators).

    :param device: a device this plugin reported in ``sdk_probe_devices``.
    :return: a :class:`MemoryReading`, or ``None`` if the device is not yours or unreadable.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_reset_peak_memory(device: DeviceInfo) -> bool | None:
    """Start a new peak-memory window on ``device``: the ``peak`` of later ``sdk_read_memory``
    readings counts from now (the bench calls it before each measured phase).

    :param device: a device this plugin reported in ``sdk_probe_devices``.
    :return: ``True`` when done, or ``None`` if the device is not yours or cannot be reset.
    firstresult.
    """


@hookspec(firstresult=True)
def sdk_read_power(device: DeviceInfo) -> PowerReading | None:
    """Read cumulative energy and power of ``device`` (NVML, RAPL, ...).

    :param device: a device this plugin reported in ``sdk_probe_devices``.
    :return: a :class:`PowerReading`, or ``None`` if the device is not yours or has no sensor.
        Never an invented figure.
    firstresult.
    """


@hookspec
def sdk_add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add subcommands to the ``sdk`` CLI.

    Call ``subparsers.add_parser(name, help=...)`` and ``set_defaults(func=handler)``; the
    handler receives the parsed ``argparse.Namespace`` and returns the exit code.

    :param subparsers: the CLI's subparsers object.
    :return: nothing (``None``).
    Collected from every plugin.
    """
