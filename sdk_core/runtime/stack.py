"""Stack: one (framework, device) pair that builds, trains, predicts, saves and loads."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
import numpy as np

from ..errors import (
    DeviceOutOfMemory,
    NotAvailableError,
    PluginError,
    SdkError,
    SpecError,
    WeightsError,
    is_out_of_memory,
    one_line,
    requested_memory,
)
from ..model import metrics
from ..model.data import make_batch
from ..model.files import size_text
from ..model.optim import Optimizer, OptimizerState, check_loss
from ..model.spec import ModelSpec
from ..model.weights import NONFINITE_HINT, check_finite, load_weights, read_header, read_metadata, save_weights
from ..plugins.manager import PluginManager, get_manager
from ..plugins.records import DeviceInfo, FrameworkInfo
from ..plugins.requests import (
    AllReduceRequest,
    BuildRequest,
    DecodeRequest,
    DistributedRequest,
    OptimizerStateRequest,
    PredictRequest,
    QuantizeRequest,
    StepRequest,
    WeightsRequest,
    World,
)
from . import host, select
from .budget import check_fits, need_bytes
from .checkpoint import Checkpoints, Position, Run
from .generate import OnToken, Sampler, check_prompts, decode, decoder_shape
from .training import ArrayData, BatchData, History, Loop
from .world import DataParallel, Sharded, from_environ, joined, remember

_RULES = {
    "epochs": "a positive int",
    "seed": "an int >= 0",
    "batch_size": "a positive int or None (full batch)",
    "validation_split": "a number in [0, 1)",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


StepKey = tuple[str, Optimizer, int, str, bool, World | None, Sharded | None]
PRECISIONS = ("fp32", "bf16", "fp16")
STRATEGIES: dict[str, DataParallel | Sharded] = {
    "data_parallel": DataParallel(),
    "zero1": Sharded(1),
    "zero2": Sharded(2),
    "zero3": Sharded(3),
}


def _step_key(
    loss: str,
    optimizer: Optimizer | None,
    accumulate: int,
    precision: str,
    remat: bool,
    world: World | None = None,
    sharded: Sharded | None = None,
) -> StepKey:
    """The checked settings of a training step: one compiled step per distinct key."""
    if not _is_int(accumulate) or accumulate < 1:
        raise SdkError(f"'accumulate' must be a positive int (got {accumulate!r})")
    if precision not in PRECISIONS:
        raise SdkError(f"'precision' must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if not isinstance(remat, bool):
        raise SdkError(f"'remat' must be true or false (got {remat!r})")
    if sharded is not None and world is None:
        raise SdkError("a sharded training step needs the job's world (see Stack.fit's 'strategy')")
    return (check_loss(loss), optimizer or Optimizer(), int(accumulate), precision, remat, world, sharded)


def _itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def _batches(data: Any) -> bool:
    """Whether ``data`` is an iterable of batches rather than an array."""
    return not isinstance(data, (np.ndarray, tuple, list, str, bytes)) and hasattr(data, "__iter__")


class Stack:
    """A framework and a device. ``build`` a spec, then ``fit``, ``predict``, ``save``, ``load``.

    ``strict`` makes a plugin fail rather than fall back when a backend the device needs
    cannot be used (an ONNX Runtime execution provider that is missing)."""

    def __init__(
        self,
        framework: str = "numpy",
        device: str = "cpu",
        manager: PluginManager | None = None,
        strict: bool = False,
    ) -> None:
        self.manager = manager or get_manager()
        self.strict = bool(strict)
        self.framework: FrameworkInfo = self.manager.framework(framework)
        self.device: DeviceInfo = self.manager.device(device)
        if self.device.kind not in self.framework.device_kinds:
            raise NotAvailableError(
                f"framework '{framework}' cannot run on {self.device.id} "
                f"(it drives: {', '.join(self.framework.device_kinds)})"
            )
        self.spec: ModelSpec | None = None
        self.model: Any = None
        self.dtype = "float32"
        self._predict: Callable[[np.ndarray], np.ndarray] | None = None
        self._steps: dict[StepKey, Callable[[np.ndarray, np.ndarray], Any]] = {}
        self.masks: dict[str, np.ndarray] | None = None
        self.precision = "float32"  # the dtype, or "int8" for a model made by quantize()

    @classmethod
    def auto(
        cls,
        policy: str = "accelerator",
        spec: ModelSpec | None = None,
        batch_size: int = 32,
        device: str | None = None,
        strict: bool = False,
        manager: PluginManager | None = None,
        task: str = "train",
    ) -> Stack:
        """The best usable pair by ``policy`` (``accelerator``, ``memory`` or ``fastest``; see
        :mod:`sdk_core.runtime.select`) for ``task`` (``train``, or ``infer``: inference-only
        frameworks such as onnxruntime count too), on ``device`` if given. ``strict`` refuses to
        fall back to the cpu. The spec is not built: call :meth:`build`."""
        manager = manager or get_manager()

        def time_step(fw: FrameworkInfo, dev: DeviceInfo, spec: ModelSpec, batch: int) -> float:
            return cls(fw.name, dev.id, manager=manager).build(spec)._median_call(task, batch, calls=5)

        fw, dev = select.choose(manager, policy, spec, batch_size, device, strict, time_step, task)
        return cls(fw.name, dev.id, manager=manager, strict=strict)

    def _median_call(self, task: str, batch_size: int, calls: int) -> float:
        """Median seconds of a training step (``task`` ``train``) or a predict call (``infer``)
        on random data, after one untimed warm-up call (compilation is not part of the figure)."""
        x, y = make_batch(self._need_model(), "cross_entropy", batch_size)
        if task == "train":
            step = self.train_step()
            run: Callable[[], Any] = lambda: float(step(x, y))
        else:
            run = lambda: self.predict(x, batch_size=batch_size)
        run()
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def to(self, framework: str | None = None, device: str | None = None) -> Stack:
        """A new stack on another framework and/or device holding this model and its current
        weights: train on one stack, serve on another."""
        spec = self._need_model()
        other = Stack(
            framework or self.framework.name, device or self.device.id, manager=self.manager, strict=self.strict
        )
        other.build(spec, dtype=self.dtype)
        other.set_weights(self.get_weights(), allow_nonfinite=True)  # this model's own weights
        return other

    def __repr__(self) -> str:
        model = self.spec.name or "model" if self.spec else "nothing built"
        return f"Stack({self.framework.name!r}, {self.device.id!r}: {model})"

    # -- model ------------------------------------------------------------------------------
    def build(self, spec: ModelSpec | Mapping[str, Any], seed: int = 0, dtype: str = "float32") -> Stack:
        """Build ``spec`` natively and set the canonical initial weights for ``seed``.

        The memory the model needs (its weights, and training on one sample) is estimated
        from the spec first: a model larger than the device is refused before anything is
        allocated."""
        spec = spec if isinstance(spec, ModelSpec) else ModelSpec.from_dict(spec)
        if not _is_int(seed) or seed < 0:
            raise SdkError(f"'seed' must be {_RULES['seed']} (got {seed!r})")
        self._build(spec, seed, dtype)
        with self._memory("initialising the weights", spec.param_count(trainable_only=False) * _itemsize(dtype)):
            self.set_weights(spec.init_weights(seed, dtype))
        return self

    def _build(self, spec: ModelSpec, seed: int, dtype: str) -> None:
        """The native model, without the canonical weights: the caller sets them once."""
        graph = ["spec:graph"] if spec.is_graph else []
        operators = [f"op:{p.op}" for p in spec.plans if p is not None]
        self._refuse_unsupported([f"layer:{l.type}" for l in spec.layers] + graph + operators + [f"dtype:{dtype}"])
        check_fits(spec, self.device, 1, dtype, "the model")
        with self._memory("building the model", need_bytes(spec, 1, dtype, "the model")):
            self.model = self.manager.build_model(
                BuildRequest(self.framework.name, spec, self.device, dtype=dtype, seed=seed, strict=self.strict)
            )
        self.spec, self.dtype, self.precision = spec, dtype, dtype
        self._predict, self._steps, self.masks = None, {}, None
        self._lengths: dict[tuple[int, ...], Stack] = {}  # models for other lengths of free axes, to predict

    def at(self, input_shape: Any) -> Stack:
        """Plan the model for ``input_shape`` (no batch axis), which differs from the spec's
        on its free axes only (``ModelSpec.free_axes``, such as an imported transformer's
        sequence axis), keeping the weights, the pruning masks and the optimizer state of
        its training steps. ``predict``, ``evaluate`` and ``fit`` on arrays do this
        themselves; call it before ``fit`` on an iterable of batches of another length."""
        spec = self._need_model()
        try:
            new = spec.at(tuple(input_shape))
        except SpecError as exc:
            raise SdkError(str(exc)) from None
        if new is spec:
            return self
        self._refuse_int8_lengths()
        weights, masks = self.get_weights(), self.masks
        states = {key: self.optimizer_state(*key) for key in self._steps}
        self._build(new, 0, self.dtype)
        self.set_weights(weights)
        if masks is not None:
            self.set_masks(masks)
        for key, state in states.items():
            self.set_optimizer_state(state, *key)
        return self

    def _refuse_int8_lengths(self) -> ModelSpec:
        """The spec, unless the model is int8: that model runs at the lengths it was made for."""
        spec = self._need_model()
        if self.precision == "int8":
            raise NotAvailableError(f"an int8 model runs at the input shape it was made for {spec.input_shape}")
        return spec

    def _other_length(self, shape: tuple[int, ...]) -> Stack:
        """A model for another length of the free axes holding this one's current weights,
        for inference (the model that trains stays at its length)."""
        spec = self._refuse_int8_lengths()
        other = self._lengths.get(shape)
        if other is None:
            other = Stack(self.framework.name, self.device.id, manager=self.manager, strict=self.strict)
            other._build(spec.at(shape), 0, self.dtype)
            self._lengths = {shape: other}  # one at a time: each holds a copy of the weights
        other.set_weights(self.get_weights(), allow_nonfinite=True)
        return other

    def _refuse_unsupported(self, features: list[str]) -> None:
        """A feature the plugin declared unsupported fails here, before the plugin is called."""
        refused = [f for f in features if f in self.framework.unsupported]
        if refused:
            kind, _, name = refused[0].partition(":")
            what = f"{name} specs" if kind == "spec" else f"operator {name}" if kind == "op" else f"{kind} {name}"
            raise NotAvailableError(
                f"framework '{self.framework.name}' does not support {what} "
                f"(declared unsupported by plugin '{self.framework.plugin}')"
            )

    @contextlib.contextmanager
    def _memory(self, doing: str, need: int | None = None) -> Iterator[None]:
        """The framework's out-of-memory error, whichever it is, as :class:`DeviceOutOfMemory`:
        the one place where every framework's is recognised (see :func:`is_out_of_memory`).
        Where the framework does not say how much it asked for, ``need`` (the bytes ``doing``
        takes by the estimate) is named instead."""
        try:
            yield
        except DeviceOutOfMemory:
            raise
        except Exception as exc:  # MemoryError, torch's DefaultCPUAllocator, RESOURCE_EXHAUSTED, ...
            if not is_out_of_memory(exc):
                raise
            detail = one_line(f"{type(exc).__name__}: {exc}", 120)
            requested = requested_memory(exc) or (f"about {size_text(need)}" if need else None)
            raise DeviceOutOfMemory(self.device.id, doing, requested, detail) from exc

    def refuse_training(self) -> None:
        """Raise :class:`NotAvailableError` unless this stack can train: an inference-only
        framework (no ``train`` capability) or an int8 model cannot. Call it before announcing
        a training run."""
        if self.precision == "int8":
            raise NotAvailableError("an int8 model runs inference only: train the float model, then quantize it again")
        if not self.framework.trains:
            raise NotAvailableError(
                f"{self.framework.name} runs inference only (plugin '{self.framework.plugin}' declares no 'train' "
                "capability): train on another framework, save the weights and load them here"
            )

    def _forget_step(self, key: StepKey) -> None:
        """Drop a compiled step (and its optimizer state); the next call makes a new one."""
        self._steps.pop(key, None)

    def _need_model(self) -> ModelSpec:
        if self.spec is None:
            raise SdkError("no model: call build(spec) or load(path) first")
        return self.spec

    def get_weights(self) -> dict[str, np.ndarray]:
        spec = self._need_model()
        return self.manager.get_weights(WeightsRequest(self.framework.name, self.model, spec))

    def set_weights(
        self, weights: Mapping[str, np.ndarray], what: str = "weights", allow_nonfinite: bool = False
    ) -> None:
        """Write canonical weights into the model; ``what`` names them in errors.

        Every array must hold floats: a float of another width (float16, float64) is converted
        to the model's dtype, an integer, bool or complex array is refused. An array holding NaN
        or infinity (after that conversion) is refused too, naming the tensor, unless
        ``allow_nonfinite``; nothing is set when anything is refused."""
        spec = self._need_model()
        if self.precision == "int8":
            raise NotAvailableError("an int8 model's weights are fixed: set them on the float model and quantize again")
        try:
            spec.check_weights(dict(weights), what=what, dtype=self.dtype)
        except SpecError as exc:
            raise WeightsError(str(exc)) from None
        weights = {p.name: np.asarray(weights[p.name], dtype=self.dtype) for p in spec.layout()}
        if not allow_nonfinite:
            check_finite(weights, what, NONFINITE_HINT)
        self.manager.set_weights(WeightsRequest(self.framework.name, self.model, spec, weights))

    def set_masks(self, masks: Mapping[str, Any] | None) -> None:
        """Pruning masks: arrays of 0 and 1 for trainable weights (canonical names and shapes).

        The masked weights are zeroed now and stay exactly zero through every later training
        step, whatever the optimizer: the plugin multiplies them by their masks inside its
        compiled step. Compiled steps (and their optimizer state) start afresh. ``None``
        removes the masks."""
        spec = self._need_model()
        if masks is None:
            self.masks, self._steps = None, {}
            return
        if self.framework.trains:  # an inference-only plugin zeroes them once; nothing trains them
            self._refuse_unsupported(["training:masks"])
        shapes = {p.name: p.shape for p in spec.layout() if p.trainable}
        checked = {}
        for name, mask in dict(masks).items():
            if name not in shapes:
                raise SdkError(f"mask for '{name}': no trainable weight of that name in the model")
            mask = np.asarray(mask)
            if mask.shape != shapes[name]:
                raise SdkError(f"mask for '{name}' has shape {mask.shape}; the weight has {shapes[name]}")
            if not np.isin(mask, (0, 1)).all():
                raise SdkError(f"mask for '{name}' must hold only 0 and 1")
            checked[name] = mask.astype(self.dtype)
        weights = self.get_weights()
        self.set_weights({**weights, **{n: weights[n] * m for n, m in checked.items()}}, allow_nonfinite=True)
        self.masks, self._steps = checked or None, {}

    def _check_masks(self) -> None:
        """After training: a plugin that ignored the masks is named, not trusted."""
        if not self.masks:
            return
        weights = self.get_weights()
        for name, mask in self.masks.items():
            if np.any(weights[name][mask == 0] != 0):
                raise PluginError(
                    self.framework.plugin,
                    "sdk_make_train_step",
                    f"its '{self.framework.name}' training step let pruned weights of '{name}' become nonzero "
                    "(it ignores StepRequest.masks)",
                )

    # -- training ---------------------------------------------------------------------------
    def train_step(
        self,
        loss: str = "cross_entropy",
        optimizer: Optimizer | None = None,
        accumulate: int = 1,
        precision: str = "fp32",
        remat: bool = False,
        world: World | None = None,
        sharded: Sharded | None = None,
    ) -> Callable[[np.ndarray, np.ndarray], Any]:
        """The plugin's compiled step for ``loss`` and ``optimizer`` (and gradient
        accumulation, precision and activation checkpointing, see :class:`StepRequest`); one
        per setting, reused (so optimizer state carries over between ``fit`` calls)."""
        spec = self._need_model()
        self.refuse_training()
        key = _step_key(loss, optimizer, accumulate, precision, remat, world, sharded)
        features = [f"loss:{key[0]}", f"optimizer:{key[1].name}", f"schedule:{key[1].schedule.kind}"]
        if accumulate > 1:
            features.append("training:accumulate")
        if precision != "fp32":
            features.append(f"precision:{precision}")
            if self.dtype != "float32":
                raise SdkError(f"mixed precision {precision} keeps float32 master weights: build the model in float32")
        if remat:
            features.append("training:remat")
        self._refuse_unsupported(features)
        if key not in self._steps:
            if self.device.kind == "cpu":  # steps reuse freed activation blocks (see host.py)
                host.keep_freed_blocks()
            with self._memory("compiling the training step"):
                self._steps[key] = self.manager.make_train_step(
                    StepRequest(
                        self.framework.name,
                        self.model,
                        spec,
                        self.device,
                        key[0],
                        key[1],
                        masks=self.masks,
                        accumulate=key[2],
                        precision=key[3],
                        remat=key[4],
                        world=key[5],
                        zero=0 if key[6] is None else key[6].stage,
                        tensor=1 if key[6] is None else key[6].tensor,
                    )
                )
        return self._steps[key]

    def fit(
        self,
        x: Any,
        y: Any = None,
        epochs: int = 1,
        batch_size: int | None = 32,
        loss: str = "cross_entropy",
        optimizer: Optimizer | None = None,
        shuffle: bool = True,
        seed: int = 0,
        validation_data: Any = None,
        validation_split: float = 0.0,
        progress: bool | None = False,
        on_epoch: Callable[[int, History], None] | None = None,
        checkpoint_dir: str | None = None,
        checkpoint_every: int | None = None,
        keep_checkpoints: int = 3,
        resume: bool = False,
        accumulate: int = 1,
        precision: str = "fp32",
        remat: bool = False,
        strategy: str | DataParallel | Sharded | None = None,
    ) -> History:
        """Train for ``epochs``; ``batch_size=None`` is full-batch gradient descent.

        ``accumulate=k``: each update averages the gradients of ``k`` micro-batches of
        ``batch_size`` (an effective batch of ``k * batch_size`` with the activation memory of
        one micro-batch). ``precision="bf16"`` or ``"fp16"``: mixed precision, float32 master
        weights (fp16 with dynamic loss scaling; skipped updates are counted in
        ``History.skipped``). ``remat=True``: activation checkpointing of transformer blocks.

        ``strategy="data_parallel"`` (or :class:`DataParallel`): data-parallel training on the
        framework's own engine over the processes ``sdk launch``, torchrun or srun started.
        ``batch_size`` is the global batch: each rank reads its shard of every global batch of
        the shuffled order, the gradients are averaged over the ranks, validation figures are
        summed over them, and only rank 0 shows progress and writes checkpoints (which resume
        on any number of processes). Run alone, it is ordinary training.
        ``strategy=Sharded(stage, tensor)`` (or ``"zero1"``, ``"zero2"``, ``"zero3"``): the same
        training with the weights, gradients and optimizer state sharded over the ranks (ZeRO),
        and with ``tensor`` > 1 dense and attention layers split over groups of ranks
        (:class:`~sdk_core.runtime.world.Sharded`); the plugin must declare the ``sharded``
        (and ``tensor_parallel``) capability, or the refusal quotes its reason.

        ``x`` and ``y`` are arrays (numpy, or memory-mapped ``.npy`` files: only the rows a
        batch needs are read), or ``x`` is any iterable of ``(x, y)`` numpy batches and ``y``
        is None: it is iterated afresh each epoch, in its own order and batch sizes (``batch_size``
        and ``shuffle`` do not apply), so a data set larger than RAM trains. ``validation_data``
        is ``(x, y)`` arrays or such an iterable.

        The last partial batch is used. Returns the per-epoch :class:`History`. At the first
        NaN or infinite loss training stops with
        :class:`~sdk_core.runtime.training.TrainingDiverged`, and the model keeps its last
        finite weights.

        With ``checkpoint_dir``, a checkpoint (weights, optimizer state, position, shuffling
        RNG) is written atomically every ``checkpoint_every`` updates, or at the end of each
        epoch, and the newest ``keep_checkpoints`` are kept (:mod:`sdk_core.runtime.checkpoint`).
        ``resume=True`` continues from the newest checkpoint there, in any framework, up to
        ``epochs`` in all; the loss curve is that of an uninterrupted run.
        """
        spec = self._need_model()
        self.refuse_training()
        for name, value, ok in (
            ("epochs", epochs, _is_int(epochs) and epochs >= 1),
            ("seed", seed, _is_int(seed) and seed >= 0),
            ("batch_size", batch_size, batch_size is None or (_is_int(batch_size) and batch_size >= 1)),
            ("validation_split", validation_split, _is_number(validation_split) and 0 <= validation_split < 1),
        ):
            if not ok:
                raise SdkError(f"'{name}' must be {_RULES[name]} (got {value!r})")
        world, sharded = self._join(strategy)
        rank, size = (world.rank, world.size) if world else (0, 1)
        if sharded is not None:  # the ranks of one tensor-parallel group read the same shard
            rank, size = rank // sharded.tensor, size // sharded.tensor
        key = _step_key(loss, optimizer, accumulate, precision, remat, world, sharded)
        data: ArrayData | BatchData
        if y is None and _batches(x):
            if validation_split:
                raise SdkError("'validation_split' needs arrays: give an iterable of batches 'validation_data'")
            data, samples, batch = BatchData(x, lambda item: self._batch(item, loss), rank, size), 0, 0
        else:
            if y is None:
                raise SdkError("targets 'y' are missing: pass y, or x as an iterable of (x, y) batches")
            x = spec.check_input(x, finite=True)
            spec = self.at(x.shape[1:])._need_model()
            y = metrics.check_targets(spec, loss, y, len(x))
            if validation_split:
                cut = len(x) - int(len(x) * validation_split)
                validation_data, x, y = (x[cut:], y[cut:]), x[:cut], y[:cut]
            if len(x) == 0:
                raise SdkError("no training samples")
            samples, batch = len(x), len(x) if batch_size is None else batch_size
            check_fits(spec, self.device, min(batch, len(x)), self.dtype, "training")
            batch = batch * accumulate if batch_size is not None else batch
            if batch < size:
                raise SdkError(f"the global batch ({batch}) is smaller than the job's {size} processes")
            data = ArrayData(x, y, batch, shuffle, rank, size)
        if resume and checkpoint_dir is None:
            raise SdkError("'resume' needs a 'checkpoint_dir' to resume from")
        if checkpoint_every is not None and checkpoint_dir is None:
            raise SdkError("'checkpoint_every' needs a 'checkpoint_dir' to write to")
        step = self.train_step(*key)
        skipped = getattr(step, "skipped", 0)
        loop = Loop(self, step, data, forget_step=lambda: self._forget_step(key), seed=seed)
        found = None
        if checkpoint_dir is not None:
            checkpoints = Checkpoints(checkpoint_dir, checkpoint_every, keep_checkpoints)
            run = Run(spec.to_json(), json.loads(json.dumps(key[1].to_dict())), key[0], samples, batch)
            found = checkpoints.load(run, key[1]) if resume else None
            if found is not None:
                self.set_weights(found[0], what="checkpoint weights")
                self.set_optimizer_state(found[1], *key)
            loop.every = checkpoint_every
            # one copy of identical weights: rank 0 writes it; sharded, every rank writes its shard
            if (world is None or world.rank == 0) or sharded is not None:
                loop.checkpoint = lambda position: self._checkpoint(checkpoints, run, key, position)
        evaluate = None
        if validation_data is not None:
            validation = validation_data if _batches(validation_data) else tuple(validation_data)
            # sharded, a forward is a collective: every rank runs the same batches (all the data)
            evaluate = lambda: self._evaluate(validation, loss, world=None if sharded else world)
        need = need_bytes(spec, min(batch, samples), self.dtype, "training") if samples else None
        with self._memory(f"training at batch size {batch_size if samples else 'of the data'}", need):
            history = loop.run(
                epochs,
                evaluate,
                bool(progress) and (world is None or world.main),
                on_epoch,
                None if found is None else found[2],
            )
        history.skipped = int(getattr(step, "skipped", 0)) - int(skipped)
        self._check_masks()
        return history

    def _join(self, strategy: str | DataParallel | Sharded | None) -> tuple[World | None, Sharded | None]:
        """The world of a data-parallel or sharded ``strategy`` (joined by the plugin once per
        process) and the sharding, if any."""
        if strategy is None:
            return None, None
        if isinstance(strategy, str) and strategy in STRATEGIES:
            strategy = STRATEGIES[strategy]
        if not isinstance(strategy, (DataParallel, Sharded)):
            names = ", ".join(STRATEGIES)
            raise SdkError(f"'strategy' must be one of {names}, a DataParallel, a Sharded or None (got {strategy!r})")
        sharded = strategy if isinstance(strategy, Sharded) else None
        self._need_capability("data_parallel", "train data-parallel")
        if sharded is not None:
            self._need_capability("sharded", f"train sharded (ZeRO stage {sharded.stage})")
            if sharded.tensor > 1:
                self._need_capability("tensor_parallel", f"split layers over {sharded.tensor} ranks (tensor parallel)")
        world = from_environ()
        if strategy.timeout is not None:
            world = attrs.evolve(world, timeout=float(strategy.timeout))
        if sharded is not None and world.size % sharded.tensor:
            raise SdkError(
                f"tensor parallelism over {sharded.tensor} ranks needs a job of a multiple of {sharded.tensor} "
                f"processes (this one has {world.size})"
            )
        if world.size == 1:
            return None, None  # one process: ordinary training
        done = joined(self.framework.name)
        if done is None:
            self.manager.init_distributed(DistributedRequest(self.framework.name, self.device, world))
            remember(self.framework.name, world)
        elif (done.rank, done.size) != (world.rank, world.size):
            raise SdkError(f"this process already joined a job as rank {done.rank} of {done.size}")
        return done or world, sharded

    def _need_capability(self, capability: str, doing: str) -> None:
        """:class:`NotAvailableError` naming the framework, and the plugin's reason where it
        gave one, unless the plugin declares ``capability``."""
        info = self.framework
        if capability in info.capabilities:
            return
        reason = info.refusals.get(capability) or f"plugin '{info.plugin}' declares no '{capability}' capability"
        raise NotAvailableError(f"framework '{info.name}' cannot {doing}: {reason}")

    def _batch(self, item: Any, loss: str) -> tuple[np.ndarray, np.ndarray]:
        """One ``(x, y)`` batch of an iterable, checked like arrays are."""
        spec = self._need_model()
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise SdkError(f"each batch must be an (x, y) pair (got {type(item).__name__})")
        x = spec.check_input(item[0], finite=True)
        if tuple(x.shape[1:]) != spec.input_shape:
            raise SdkError(
                f"a batch has input shape {tuple(x.shape[1:])}, the model trains at {spec.input_shape}: "
                "batches of one fit share their lengths (Stack.at(shape) plans the model for another)"
            )
        return x, metrics.check_targets(spec, loss, item[1], len(x))

    def _checkpoint(self, checkpoints: Checkpoints, run: Run, key: StepKey, position: Position) -> None:
        weights, state, world = self.get_weights(), self.optimizer_state(*key), key[5]
        if key[6] is None or world is None:
            checkpoints.save(weights, state, run, position, self.framework.name)
            return

        def barrier(ok: float) -> float:  # every rank's shard is written when the sum is the world size
            return float(self.manager.all_reduce(AllReduceRequest(self.framework.name, np.array([ok])))[0])

        checkpoints.save_sharded(weights, state, run, position, self.framework.name, world.rank, world.size, barrier)

    # -- optimizer state ----------------------------------------------------------------------
    def optimizer_state(
        self, loss: str = "cross_entropy", optimizer: Optimizer | None = None, *settings: Any
    ) -> OptimizerState:
        """The state of the optimizer of the training step for ``loss`` and ``optimizer`` (and
        the step's other settings, as :meth:`train_step` takes them), in the canonical layout
        every framework reads."""
        spec = self._need_model()
        optimizer = optimizer or Optimizer()
        step = self.train_step(loss, optimizer, *settings)
        return self.manager.get_optimizer_state(
            OptimizerStateRequest(self.framework.name, self.model, spec, optimizer, step)
        )

    def set_optimizer_state(
        self, state: OptimizerState, loss: str = "cross_entropy", optimizer: Optimizer | None = None, *settings: Any
    ) -> None:
        """Make the training step for ``loss`` and ``optimizer`` continue from ``state``
        (possibly read from another framework)."""
        spec = self._need_model()
        optimizer = optimizer or Optimizer()
        shapes = {p.name: p.shape for p in spec.layout() if p.trainable}
        state.check(optimizer, shapes)
        step = self.train_step(loss, optimizer, *settings)
        self.manager.set_optimizer_state(
            OptimizerStateRequest(self.framework.name, self.model, spec, optimizer, step, state)
        )

    # -- inference --------------------------------------------------------------------------
    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """Model outputs for ``x`` (logits for classifiers), in batches."""
        spec = self._need_model()
        if not _is_int(batch_size) or batch_size < 1:
            raise SdkError(f"'batch_size' must be a positive int (got {batch_size!r})")
        x = spec.check_input(x)
        if tuple(x.shape[1:]) != spec.input_shape:
            return self._other_length(tuple(x.shape[1:])).predict(x, batch_size)
        check_fits(spec, self.device, min(batch_size, max(len(x), 1)), self.dtype, "inference")
        if self._predict is None:
            self._predict = self.manager.make_predict(
                PredictRequest(self.framework.name, self.model, spec, self.device)
            )
        need = need_bytes(spec, batch_size, self.dtype, "inference")
        with self._memory(f"predicting at batch size {batch_size}", need):
            if len(x) <= batch_size:
                return np.asarray(self._predict(x))
            return np.concatenate(
                [np.asarray(self._predict(x[s : s + batch_size])) for s in range(0, len(x), batch_size)]
            )

    def evaluate(self, x: Any, y: Any = None, loss: str = "cross_entropy", batch_size: int = 256) -> dict[str, float]:
        """Mean loss, and accuracy for ``cross_entropy``, on ``x``, ``y`` arrays or on an
        iterable of ``(x, y)`` batches (``y`` None), weighted by batch size."""
        if y is None and not _batches(x):
            raise SdkError("targets 'y' are missing: pass y, or x as an iterable of (x, y) batches")
        return self._evaluate(x if y is None else (x, y), loss, batch_size)

    def _evaluate(self, data: Any, loss: str, batch_size: int = 256, world: World | None = None) -> dict[str, float]:
        spec = self._need_model()
        if isinstance(data, tuple):
            if world is not None and world.size > 1:  # this rank's contiguous share; the sums are reduced below
                n = len(data[0])
                lo, hi = world.rank * n // world.size, (world.rank + 1) * n // world.size
                data = (data[0][lo:hi], data[1][lo:hi])
            data = [data]  # arrays: one "batch", predicted in batches of batch_size
        n, loss_sum, correct = 0, 0.0, 0.0
        for item in data:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise SdkError(f"each batch must be an (x, y) pair (got {type(item).__name__})")
            x = spec.check_input(item[0])
            y = metrics.check_targets(spec, loss, item[1], len(x))
            out = self.predict(x, batch_size)
            n += len(x)
            loss_sum += metrics.loss_value(loss, out, y) * len(x)
            if loss == "cross_entropy":
                correct += metrics.accuracy(out, y) * len(x)
        if world is not None and world.size > 1:
            sums = self.manager.all_reduce(AllReduceRequest(self.framework.name, np.array([n, loss_sum, correct])))
            n, loss_sum, correct = int(sums[0]), float(sums[1]), float(sums[2])
        if n == 0:
            raise SdkError("no samples to evaluate")
        result = {"loss": loss_sum / n}
        if loss == "cross_entropy":
            result["accuracy"] = correct / n
        return result

    def generate(
        self,
        prompt_ids: Any,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        stop_ids: Iterable[int] | None = None,
        use_cache: bool = True,
        on_token: OnToken | None = None,
    ) -> list[np.ndarray]:
        """New tokens for each prompt of a decoder model (the zoo GPT family), with the
        framework's key/value cache (frameworks with the ``generate`` capability).

        ``prompt_ids`` is a list of token-id sequences (of any lengths: they are left-padded
        inside, and each row gives the tokens it gives alone) or a 2-D int array, one prompt
        per row. Returns one int64 array per row: up to ``max_new_tokens`` tokens, ending at
        the row's first id in ``stop_ids`` (kept). ``temperature`` 0 is greedy; otherwise
        tokens are drawn from ``softmax(logits / temperature)`` kept to the ``top_k`` likeliest
        and then to the smallest set reaching probability ``top_p``, with a generator seeded
        by ``seed``: the same seed gives the same tokens on every framework whose logits
        agree. ``use_cache=False`` recomputes the whole sequence at every step (the
        reference the cache is measured against). ``on_token(row, token_id)``, if given, is
        called once per new token as soon as it is made (to stream text)."""
        spec = self._need_model()
        vocab, context = decoder_shape(spec)
        if self.precision == "int8":
            raise NotAvailableError("an int8 model does not generate: generate with the float model")
        self._need_capability("generate", "generate tokens")
        if not _is_int(max_new_tokens) or max_new_tokens < 1:
            raise SdkError(f"'max_new_tokens' must be a positive int (got {max_new_tokens!r})")
        rows = check_prompts(prompt_ids, vocab)
        longest = max(len(r) for r in rows)
        if longest + max_new_tokens > context:
            raise SdkError(
                f"a {longest}-token prompt and {max_new_tokens} new tokens exceed the model's context of "
                f"{context} tokens (at most {max(context - longest, 0)} new tokens)"
            )
        sampler = Sampler(temperature, top_k, top_p, seed)
        if not isinstance(use_cache, bool):
            raise SdkError(f"'use_cache' must be true or false (got {use_cache!r})")
        request = DecodeRequest(self.framework.name, self.model, spec, self.device, len(rows), longest + max_new_tokens)
        with self._memory(f"generating {max_new_tokens} tokens for {len(rows)} prompt(s)"):
            decoder = self.manager.make_decoder(request)
            return decode(decoder, rows, max_new_tokens, sampler, stop_ids, use_cache, on_token)

    # -- deployment -------------------------------------------------------------------------
    def quantize(self, calibration: Any, method: str = "minmax", per_channel: bool = True) -> Stack:
        """A new stack holding an int8 inference model made from this model's current weights,
        for frameworks with the ``int8`` capability (onnxruntime): static quantization, with
        activation ranges measured on the sample inputs ``calibration`` by ``method``
        (``minmax``, ``percentile`` or ``entropy``) and weights per output channel. The new
        stack predicts and evaluates; it does not train."""
        spec = self._need_model()
        if "int8" not in self.framework.capabilities:
            raise NotAvailableError(
                f"framework '{self.framework.name}' makes no int8 models (plugin '{self.framework.plugin}' "
                "declares no 'int8' capability): load the weights on onnxruntime and quantize there"
            )
        if self.precision == "int8":
            raise SdkError("this model is already int8: quantize the float model")
        x = spec.check_input(calibration, finite=True)
        spec = self.at(x.shape[1:])._need_model()  # the int8 model runs at the calibration's lengths
        if len(x) == 0:
            raise SdkError("'calibration' holds no sample inputs")
        with self._memory("making the int8 model"):
            model = self.manager.quantize_model(
                QuantizeRequest(self.framework.name, self.model, spec, self.device, x, method, bool(per_channel))
            )
        other = Stack(self.framework.name, self.device.id, manager=self.manager, strict=self.strict)
        other.spec, other.model, other.dtype, other.precision = spec, model, self.dtype, "int8"
        return other

    def serialized(self) -> bytes | None:
        """The file the framework runs this model from (an ONNX model for onnxruntime), or
        ``None`` when the framework keeps none (its file is then the canonical weights')."""
        spec = self._need_model()
        return self.manager.serialize_model(WeightsRequest(self.framework.name, self.model, spec))

    # -- files ------------------------------------------------------------------------------
    def save(self, path: str, metadata: Mapping[str, str] | None = None) -> None:
        """Save the weights and the spec to a safetensors file, atomically, with ``metadata``
        (strings, such as a ``tokenizer`` description) beside them."""
        spec = self._need_model()
        save_weights(
            path,
            self.get_weights(),
            {**(metadata or {}), "spec": spec.to_json(), "framework": self.framework.name, "device": self.device.id},
        )

    def replace_head(self, num_classes: int, seed: int = 0) -> Stack:
        """Transfer learning: replace the model's final classifier (its last dense layer)
        with a freshly initialised one of ``num_classes`` outputs, keeping every other weight.
        ``Stack(...).load("imported.safetensors").replace_head(10)``, then ``fit``."""
        from ..model.transfer import with_head

        new, head = with_head(self._need_model(), num_classes)
        kept = {name: value for name, value in self.get_weights().items() if name not in head}
        self.build(new, seed=seed, dtype=self.dtype)
        self.set_weights({**self.get_weights(), **kept})
        return self

    def load(self, path: str, allow_nonfinite: bool = False) -> Stack:
        """Load weights saved by any framework. Builds the file's spec if nothing is built
        yet; otherwise the file must match the built model. The file's header (its tensor
        names and shapes) is checked against the spec before anything is built or read.
        Tensors stored as integers, or holding NaN or infinity, are refused as in
        :meth:`set_weights` (``allow_nonfinite`` loads the latter anyway)."""
        return self._load(path, lambda: load_weights(path)[0], allow_nonfinite)

    def _load(self, path: str, read: Callable[[], Mapping[str, np.ndarray]], allow_nonfinite: bool = False) -> Stack:
        """:meth:`load`, with the tensors from ``read()`` (called once the header checks pass)."""
        shapes, meta = read_header(path)
        spec = self.spec
        if spec is None:
            if "spec" not in meta:
                raise WeightsError(f"'{path}' holds no model spec: build(spec) before load")
            try:
                spec = ModelSpec.from_json(meta["spec"])
            except SpecError as exc:
                raise WeightsError(f"'{path}' holds an invalid spec: {exc}") from None
        try:
            spec.check_shapes(shapes, what=f"weights in '{path}'")
        except SpecError as exc:
            raise WeightsError(str(exc)) from None
        if self.spec is None:
            self._build(spec, 0, self.dtype)
        self.set_weights(read(), what=f"weights in '{path}'", allow_nonfinite=allow_nonfinite)
        return self


def load_spec(path: str) -> ModelSpec:
    """The spec stored in a weights file (its header only: no tensor is read)."""
    meta = read_metadata(path)
    if "spec" not in meta:
        raise WeightsError(f"'{path}' holds no model spec")
    return ModelSpec.from_json(meta["spec"])
