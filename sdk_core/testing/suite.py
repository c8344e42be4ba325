"""ConformanceSuite: the tests every framework plugin passes. See the package docstring."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from typing import Any, ClassVar

import numpy as np
import pytest

import sdk_core
from sdk_core import NotAvailableError, SdkError, SpecError, Stack, WeightsError, get_manager

from .cases import ALL_FEATURES, LAYER_CASES, STEP_CASES, STEP_SPEC, features_of, inputs, random_weights, targets
from .op_cases import random_op_graph

REFERENCE = "numpy"
FRAMEWORK_MODULES = ("torch", "tensorflow", "jax", "mindspore", "onnxruntime", "onnx")
PORTABLE_CASES = ("lenet_like", "gpt", "graph_resnet_block", "graph_encoder_block", "op_folded_shapes")


def _installed_frameworks() -> list[str]:
    return sorted(n for n, f in get_manager().frameworks().items() if f.installed)


class ConformanceSuite:
    """Subclass as ``TestConformance`` and set ``framework`` (and ``device``, ``exclusions``,
    ``capabilities``).

    ``capabilities`` are what the plugin declares in ``FrameworkHooks(capabilities=...)``:
    ``train`` and ``infer`` by default; an inference-only plugin sets ``{"infer"}`` (its
    training cases are skipped, and training must be refused clearly), one that makes int8
    models adds ``int8`` (its int8 model is checked against the float one).

    ``exclusions`` maps a feature id (``layer:<type>``, ``op:<Operator>``, ``optimizer:<name>``,
    ``loss:<name>``, ``schedule:<kind>``, ``dtype:float64``, ...) to the reason the plugin does
    not support it; it may only name features the plugin declares unsupported
    (``FrameworkHooks(unsupported=...)``). Tests needing a declared or excluded feature are
    skipped with the reason in the report, and the feature must fail with a clear sdk_core
    error rather than run. An undeclared feature is presumed supported: a failing case ends
    with a note naming the features it used and how to declare one.
    """

    framework: ClassVar[str] = ""
    device: ClassVar[str] = "cpu"
    exclusions: ClassVar[dict[str, str]] = {}
    capabilities: ClassVar[set[str]] = {"train", "infer"}
    forward_rtol: ClassVar[float] = 1e-4
    forward_atol: ClassVar[float] = 1e-5
    step_rtol: ClassVar[float] = 1e-4
    step_atol: ClassVar[float] = 1e-5

    # -- helpers ------------------------------------------------------------------------------
    def _needs(self, features: set[str]) -> None:
        """Skip the case when it needs a feature the kit excludes or the plugin declares
        unsupported; otherwise remember what it needs, for the note on a failure."""
        declared = set(get_manager().framework(self.framework).unsupported)
        for feature in sorted(features):
            if feature in self.exclusions:
                pytest.skip(f"excluded by plugin '{self.framework}': {feature}: {self.exclusions[feature]}")
            if feature in declared:
                pytest.skip(f"declared unsupported by plugin '{self.framework}': {feature}")
        self._features = set(features)

    def _needs_training(self) -> None:
        if "train" not in self.capabilities:
            pytest.skip(f"plugin '{self.framework}' runs inference only (no 'train' capability)")

    def _trainer(self, spec, weights=None) -> Stack:
        """A stack that trains ``spec``: this framework, or the reference for an
        inference-only plugin."""
        return self._stack(spec, weights) if "train" in self.capabilities else self._reference(spec, weights)

    def _stack(self, spec, weights=None, dtype: str = "float32") -> Stack:
        stack = Stack(self.framework, self.device).build(spec, dtype=dtype)
        if weights is not None:
            stack.set_weights(weights)
        return stack

    @staticmethod
    def _reference(spec, weights=None, dtype: str = "float32") -> Stack:
        if REFERENCE not in _installed_frameworks():
            pytest.fail("the conformance kit needs the reference plugin: pip install sdk-numpy")
        stack = Stack(REFERENCE, "cpu").build(spec, dtype=dtype)
        if weights is not None:
            stack.set_weights(weights)
        return stack

    def _assert_weights_close(self, got: dict, want: dict, what: str) -> None:
        assert sorted(got) == sorted(want), what
        for name in want:
            np.testing.assert_allclose(
                got[name], want[name], rtol=self.step_rtol, atol=self.step_atol, err_msg=f"{what}: weight '{name}'"
            )

    # -- contract ------------------------------------------------------------------------------
    def test_exclusions_name_real_features(self):
        unknown = sorted(set(self.exclusions) - ALL_FEATURES)
        assert not unknown, f"unknown feature ids in exclusions: {unknown}"
        info = get_manager().framework(self.framework)
        undeclared = sorted(set(self.exclusions) - set(info.unsupported))
        assert not undeclared, (
            f"the kit excludes {undeclared}, which plugin '{self.framework}' does not declare: declare them, "
            f"FrameworkHooks(..., unsupported={tuple(sorted(set(info.unsupported) | set(undeclared)))!r}), "
            "so that the core refuses them too"
        )

    def test_capabilities_are_what_the_plugin_declares(self):
        info = get_manager().framework(self.framework)
        assert set(info.capabilities) == set(self.capabilities), (
            f"the kit's capabilities {sorted(self.capabilities)} must be what the plugin declares "
            f"(FrameworkHooks(capabilities=...)): {sorted(info.capabilities)}"
        )

    def test_framework_is_found_and_drives_the_device(self):
        manager = get_manager()
        info = manager.framework(self.framework)
        assert info.installed and manager.device(self.device).kind in info.device_kinds

    def test_discovery_imports_no_framework(self):
        code = (
            "import json, sys, sdk_core; m = sdk_core.get_manager(); m.plugins(); m.frameworks(); "
            f"m.devices(); print(json.dumps(sorted(set(sys.modules) & set({FRAMEWORK_MODULES!r}))))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1]) == []

    # -- numerics against the reference ------------------------------------------------------
    @pytest.mark.parametrize("case", LAYER_CASES)
    def test_forward_matches_reference(self, case):
        spec = LAYER_CASES[case].spec
        self._needs(LAYER_CASES[case].features)
        weights = random_weights(spec)
        x = inputs(spec)
        got = self._stack(spec, weights).predict(x)
        want = self._reference(spec, weights).predict(x)
        assert got.shape == want.shape == (len(x),) + spec.output_shape
        np.testing.assert_allclose(got, want, rtol=self.forward_rtol, atol=self.forward_atol)

    @pytest.mark.parametrize("case", LAYER_CASES)
    def test_training_step_matches_reference(self, case):
        """One sgd step per layer: gradients of every layer, batchnorm running statistics."""
        spec = LAYER_CASES[case].spec
        self._needs_training()
        self._needs(LAYER_CASES[case].features | {"optimizer:sgd", "loss:mse"})
        weights = random_weights(spec)
        x, y = inputs(spec), targets(spec, "mse")
        optimizer = sdk_core.Optimizer("sgd", lr=0.1)
        stack, ref = self._stack(spec, weights), self._reference(spec, weights)
        loss = float(stack.train_step("mse", optimizer)(x, y))
        ref_loss = float(ref.train_step("mse", optimizer)(x, y))
        if any(isinstance(l, sdk_core.Dropout) for l in spec.layers):
            # masks are random per framework: check the step ran and trained, not the values
            assert np.isfinite(loss) and not np.allclose(stack.get_weights()["0.weight"], weights["0.weight"])
            return
        assert loss == pytest.approx(ref_loss, rel=self.step_rtol, abs=self.step_atol)
        self._assert_weights_close(stack.get_weights(), ref.get_weights(), f"{case} after one step")

    @pytest.mark.parametrize("case", STEP_CASES)
    def test_optimizer_steps_match_reference(self, case):
        step_case = STEP_CASES[case]
        self._needs_training()
        self._needs(step_case.features | {"layer:dense", "layer:tanh"})
        weights = random_weights(STEP_SPEC)
        stack, ref = self._stack(STEP_SPEC, weights), self._reference(STEP_SPEC, weights)
        step = stack.train_step(step_case.loss, step_case.optimizer)
        ref_step = ref.train_step(step_case.loss, step_case.optimizer)
        for i in range(step_case.steps):
            x, y = inputs(STEP_SPEC, seed=10 + i), targets(STEP_SPEC, step_case.loss, seed=20 + i)
            assert float(step(x, y)) == pytest.approx(float(ref_step(x, y)), rel=self.step_rtol, abs=self.step_atol)
            self._assert_weights_close(stack.get_weights(), ref.get_weights(), f"{case} after step {i + 1}")

    @pytest.mark.parametrize("case", STEP_CASES)
    def test_optimizer_state_is_canonical(self, case):
        """After two steps the optimizer state, in the canonical layout, equals the
        reference's; the reference's state put into a fresh step gives the same third step."""
        step_case = STEP_CASES[case]
        self._needs_training()
        self._needs(step_case.features | {"layer:dense", "layer:tanh"})
        opt, loss = step_case.optimizer, step_case.loss
        weights = random_weights(STEP_SPEC)
        stack, ref = self._stack(STEP_SPEC, weights), self._reference(STEP_SPEC, weights)
        step, ref_step = stack.train_step(loss, opt), ref.train_step(loss, opt)
        for i in range(2):
            x, y = inputs(STEP_SPEC, seed=10 + i), targets(STEP_SPEC, loss, seed=20 + i)
            float(step(x, y)), float(ref_step(x, y))
        mine, theirs = stack.optimizer_state(loss, opt), ref.optimizer_state(loss, opt)
        assert mine.step == theirs.step == 2
        assert sorted(mine.slots) == sorted(theirs.slots)
        for slot, arrays in theirs.slots.items():
            self._assert_weights_close(mine.slots[slot], arrays, f"{case}: optimizer slot '{slot}'")
        fresh = self._stack(STEP_SPEC, ref.get_weights())
        fresh.set_optimizer_state(theirs, loss, opt)
        x, y = inputs(STEP_SPEC, seed=12), targets(STEP_SPEC, loss, seed=22)
        got = float(fresh.train_step(loss, opt)(x, y))
        assert got == pytest.approx(float(ref_step(x, y)), rel=self.step_rtol, abs=self.step_atol)
        self._assert_weights_close(fresh.get_weights(), ref.get_weights(), f"{case}: the step after set_state")

    def test_interrupted_training_resumes_with_the_same_losses(self, tmp_path):
        """A run stopped mid-epoch resumes from its checkpoint, here and in the reference
        framework, with the loss curve of an uninterrupted run."""
        self._needs_training()
        self._needs({"layer:dense", "layer:relu", "optimizer:adam", "schedule:cosine", "loss:cross_entropy"})
        spec = sdk_core.zoo.mlp(input_dim=12, hidden=(16,), classes=3)
        rng = np.random.default_rng(7)
        x, y = rng.standard_normal((100, 12)).astype(np.float32), rng.integers(0, 3, 100)
        opt = sdk_core.Optimizer("adam", lr=0.02, schedule=sdk_core.Schedule("cosine", warmup_steps=3, total_steps=28))
        settings: dict[str, Any] = {"epochs": 4, "batch_size": 16, "optimizer": opt, "seed": 3}
        full = self._stack(spec).fit(x, y, **settings).loss

        class Stop(Exception):
            pass

        def stop(epoch, history):
            if epoch == 1:
                raise Stop

        here, there = tmp_path / "here", tmp_path / "there"
        with pytest.raises(Stop):
            self._stack(spec).fit(x, y, **settings, checkpoint_dir=str(here), checkpoint_every=5, on_epoch=stop)
        shutil.copytree(here, there)
        resumed = self._stack(spec).fit(x, y, **settings, checkpoint_dir=str(here), checkpoint_every=5, resume=True)
        np.testing.assert_allclose(resumed.loss, full, rtol=0, atol=1e-6, err_msg="resumed here")
        elsewhere = Stack(REFERENCE).build(spec).fit(x, y, **settings, checkpoint_dir=str(there), resume=True)
        np.testing.assert_allclose(elsewhere.loss, full, rtol=self.step_rtol, atol=1e-4, err_msg="resumed in numpy")

    def test_float64(self):
        self._needs({"dtype:float64", "layer:dense", "layer:tanh"})
        weights = random_weights(STEP_SPEC, dtype="float64")
        x = inputs(STEP_SPEC).astype(np.float64)
        got = self._stack(STEP_SPEC, weights, "float64").predict(x)
        want = self._reference(STEP_SPEC, weights, "float64").predict(x)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)

    def test_random_operator_graphs_match_reference(self):
        """Random graphs of operator nodes (consistent shapes, merges), drawn by hypothesis:
        the forward pass and one training step equal the reference's."""
        hypothesis = pytest.importorskip("hypothesis", reason="random operator graphs need hypothesis")
        strategies = pytest.importorskip("hypothesis.strategies")
        checks = hypothesis.HealthCheck

        @hypothesis.settings(max_examples=10, deadline=None, suppress_health_check=list(checks), database=None)
        @hypothesis.given(data=strategies.data())
        def check(data: Any) -> None:
            self._random_operator_graph(data.draw)

        check()

    def _random_operator_graph(self, draw: Any) -> None:
        spec = random_op_graph(draw)
        self._needs(features_of(spec) | {"optimizer:sgd", "loss:mse"})
        weights = random_weights(spec, seed=5)
        x = inputs(spec, seed=6)
        stack, ref = self._stack(spec, weights), self._reference(spec, weights)
        np.testing.assert_allclose(stack.predict(x), ref.predict(x), rtol=self.forward_rtol, atol=self.forward_atol)
        if "train" not in self.capabilities:
            return
        y, rule = targets(spec, "mse", seed=7), sdk_core.Optimizer("sgd", lr=0.05)
        loss = float(stack.train_step("mse", rule)(x, y))
        assert loss == pytest.approx(float(ref.train_step("mse", rule)(x, y)), rel=self.step_rtol, abs=self.step_atol)
        self._assert_weights_close(stack.get_weights(), ref.get_weights(), "a random operator graph after one step")

    # -- memory-efficient training ------------------------------------------------------------
    @pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
    def test_gradient_accumulation_matches_one_big_batch(self, optimizer):
        """k micro-batches of b give the losses and weights of one batch of k*b (1e-5), a
        partial last batch included."""
        step_case = STEP_CASES[optimizer]
        self._needs_training()
        self._needs(step_case.features | {"layer:dense", "layer:tanh", "training:accumulate"})
        weights = random_weights(STEP_SPEC)
        big, small = self._stack(STEP_SPEC, weights), self._stack(STEP_SPEC, weights)
        step = big.train_step("cross_entropy", step_case.optimizer)
        micro = small.train_step("cross_entropy", step_case.optimizer, accumulate=3)
        for i, n in enumerate((12, 12, 7)):
            x, y = inputs(STEP_SPEC, n, seed=60 + i), targets(STEP_SPEC, "cross_entropy", n, seed=70 + i)
            assert float(micro(x, y)) == pytest.approx(float(step(x, y)), rel=1e-5, abs=1e-6)
            for name, value in big.get_weights().items():
                np.testing.assert_allclose(small.get_weights()[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
        x, y = inputs(STEP_SPEC, 30, seed=80), targets(STEP_SPEC, "cross_entropy", 30, seed=81)
        settings: dict[str, Any] = {"epochs": 2, "optimizer": step_case.optimizer, "shuffle": False}
        one = self._stack(STEP_SPEC, weights).fit(x, y, batch_size=12, **settings)
        three = self._stack(STEP_SPEC, weights).fit(x, y, batch_size=4, accumulate=3, **settings)
        np.testing.assert_allclose(three.loss, one.loss, rtol=1e-5)

    def test_streamed_batches_train_like_arrays(self, tmp_path):
        """An iterable of (x, y) batches and memory-mapped arrays train as the same data in
        memory does."""
        self._needs_training()
        self._needs({"layer:dense", "layer:tanh", "optimizer:sgd", "loss:cross_entropy"})
        weights = random_weights(STEP_SPEC)
        x, y = inputs(STEP_SPEC, 24, seed=90), targets(STEP_SPEC, "cross_entropy", 24, seed=91)
        rule = sdk_core.Optimizer("sgd", lr=0.1, momentum=0.9)

        class Batches:
            def __iter__(self):
                return ((x[s : s + 8], y[s : s + 8]) for s in range(0, 24, 8))

        arrays = self._stack(STEP_SPEC, weights).fit(x, y, epochs=2, batch_size=8, shuffle=False, optimizer=rule)
        streamed = self._stack(STEP_SPEC, weights).fit(Batches(), epochs=2, optimizer=rule)
        np.testing.assert_allclose(streamed.loss, arrays.loss, rtol=1e-5)
        np.save(tmp_path / "x.npy", x)
        mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
        again = self._stack(STEP_SPEC, weights).fit(mapped, y, epochs=2, batch_size=8, shuffle=False, optimizer=rule)
        np.testing.assert_allclose(again.loss, arrays.loss, rtol=1e-5)

    @pytest.mark.parametrize("precision", ["bf16", "fp16"])
    def test_mixed_precision_keeps_float32_weights_and_follows_float32(self, precision):
        """A mixed-precision step computes in low precision (its loss differs slightly from
        float32's), keeps float32 master weights, and leaves inference in float32."""
        spec = LAYER_CASES["gpt"].spec
        self._needs_training()
        self._needs(LAYER_CASES["gpt"].features | {"optimizer:sgd", f"precision:{precision}"})
        weights = random_weights(spec, seed=14)
        x, y = inputs(spec, 8, seed=15), targets(spec, "cross_entropy", 8, seed=16)
        rule = sdk_core.Optimizer("sgd", lr=0.05)
        full, mixed = self._stack(spec, weights), self._stack(spec, weights)
        want = float(full.train_step("cross_entropy", rule)(x, y))
        step = mixed.train_step("cross_entropy", rule, precision=precision)
        got = float(step(x, y))
        assert got == pytest.approx(want, rel=0.03)
        after = mixed.get_weights()
        assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in after.values())
        moved = [n for n in after if not np.array_equal(after[n], weights[n])]
        assert moved, "the mixed-precision step did not update the weights"
        np.testing.assert_allclose(
            mixed.predict(x), self._stack(spec, after).predict(x), rtol=self.forward_rtol, atol=self.forward_atol
        )
        assert getattr(step, "skipped", 0) in (0, 1)  # fp16 may skip its first step while the scale settles

    def test_fp16_skips_and_counts_an_overflowing_step(self):
        spec = LAYER_CASES["relu"].spec
        self._needs_training()
        self._needs(LAYER_CASES["relu"].features | {"optimizer:sgd", "loss:mse", "precision:fp16"})
        weights = random_weights(spec, seed=17)
        stack = self._stack(spec, weights)
        step = stack.train_step("mse", sdk_core.Optimizer("sgd", lr=0.1), precision="fp16")
        step(np.full((4, 6), 3e4, np.float32), np.zeros((4, 6), np.float32))  # overflows float16
        assert getattr(step, "skipped", None) == 1
        for name, value in stack.get_weights().items():
            np.testing.assert_array_equal(value, weights[name], err_msg=f"'{name}' changed in a skipped step")

    def test_activation_checkpointing_gives_the_same_step(self):
        spec = LAYER_CASES["gpt"].spec
        self._needs_training()
        self._needs(LAYER_CASES["gpt"].features | {"optimizer:sgd", "training:remat"})
        weights = random_weights(spec, seed=18)
        x, y = inputs(spec, 8, seed=19), targets(spec, "cross_entropy", 8, seed=20)
        rule = sdk_core.Optimizer("sgd", lr=0.05)
        plain, remat = self._stack(spec, weights), self._stack(spec, weights)
        want = float(plain.train_step("cross_entropy", rule)(x, y))
        assert float(remat.train_step("cross_entropy", rule, remat=True)(x, y)) == pytest.approx(want, rel=1e-5)
        self._assert_weights_close(remat.get_weights(), plain.get_weights(), "after a checkpointed step")

    # -- files and portability ---------------------------------------------------------------
    def test_weights_round_trip_through_safetensors(self, tmp_path):
        spec = LAYER_CASES["lenet_like"].spec
        self._needs(LAYER_CASES["lenet_like"].features)
        stack = self._stack(spec, random_weights(spec, seed=3))
        path = tmp_path / "weights.safetensors"
        stack.save(str(path))
        again = Stack(self.framework, self.device).load(str(path))
        before, after = stack.get_weights(), again.get_weights()
        for name in before:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        x = inputs(spec)
        np.testing.assert_array_equal(again.predict(x), stack.predict(x))

    def test_weights_read_are_the_callers_own(self):
        """``get_weights`` returns arrays that no later step changes (fit keeps them to go
        back to when training diverges) and whose change does not reach the model."""
        spec = LAYER_CASES["lenet_like"].spec
        self._needs_training()
        self._needs(LAYER_CASES["lenet_like"].features | {"optimizer:sgd", "loss:mse"})
        stack = self._stack(spec, random_weights(spec, seed=5))
        read = stack.get_weights()
        kept = {name: value.copy() for name, value in read.items()}
        step = stack.train_step("mse", sdk_core.Optimizer("sgd", lr=0.1, momentum=0.9))
        for i in range(3):
            step(inputs(spec, seed=30 + i), targets(spec, "mse", seed=40 + i))
        changed = stack.get_weights()
        for name, value in read.items():
            np.testing.assert_array_equal(value, kept[name], err_msg=f"{name} read before training")
        assert any(not np.array_equal(changed[n], kept[n]) for n in kept), "three sgd steps changed nothing"
        now = {name: value.copy() for name, value in changed.items()}
        for value in changed.values():
            if value.flags.writeable:
                value[...] = 0
        for name, value in stack.get_weights().items():
            np.testing.assert_array_equal(value, now[name], err_msg=f"zeroing the array read changed {name}")

    @pytest.mark.parametrize("case", PORTABLE_CASES)
    def test_trained_weights_load_in_every_installed_framework(self, case, tmp_path):
        spec = LAYER_CASES[case].spec
        self._needs(LAYER_CASES[case].features | {"optimizer:adam", "loss:cross_entropy"})
        trainer = self._trainer(spec, random_weights(spec, seed=4))
        step = trainer.train_step("cross_entropy", sdk_core.Optimizer("adam", lr=0.01))
        for i in range(3):
            step(inputs(spec, 8, seed=30 + i), targets(spec, "cross_entropy", 8, seed=40 + i))
        stack = self._stack(spec, trainer.get_weights())
        path = tmp_path / "trained.safetensors"
        stack.save(str(path))
        x = inputs(spec, seed=50)
        mine = stack.predict(x)
        checked = []
        for other in _installed_frameworks():
            info = get_manager().framework(other)
            if other == self.framework or LAYER_CASES[case].features & set(info.unsupported):
                continue
            theirs = Stack(other, "cpu").load(str(path))
            np.testing.assert_allclose(
                theirs.predict(x), mine, rtol=self.forward_rtol, atol=1e-4, err_msg=f"{self.framework} -> {other}"
            )
            back = tmp_path / f"from_{other}.safetensors"
            theirs.save(str(back))
            np.testing.assert_allclose(
                Stack(self.framework, self.device).load(str(back)).predict(x),
                mine,
                rtol=self.forward_rtol,
                atol=1e-4,
                err_msg=f"{other} -> {self.framework}",
            )
            checked.append(other)
        assert REFERENCE in checked or self.framework == REFERENCE, "the reference must be installed alongside"

    # -- compression ---------------------------------------------------------------------------
    @pytest.mark.parametrize("optimizer", ["adam", "sgd"])
    def test_pruning_masks_hold_through_training(self, optimizer):
        """Masked weights stay exactly zero after every step (Adam's too); the others train."""
        spec = LAYER_CASES["lenet_like"].spec
        self._needs_training()
        self._needs(LAYER_CASES["lenet_like"].features | {f"optimizer:{optimizer}", "training:masks"})
        stack = self._stack(spec, random_weights(spec, seed=6))
        rng = np.random.default_rng(7)
        masks = {p.name: (rng.random(p.shape) > 0.7).astype(np.float32) for p in spec.layout() if len(p.shape) >= 2}
        stack.set_masks(masks)
        rule = sdk_core.Optimizer(optimizer, lr=0.05, momentum=0.9 if optimizer == "sgd" else 0.0)
        x, y = inputs(spec, 16, seed=8), targets(spec, "cross_entropy", 16, seed=9)
        before = stack.get_weights()
        stack.fit(x, y, epochs=2, batch_size=4, optimizer=rule)
        after = stack.get_weights()
        for name, mask in masks.items():
            assert (after[name][mask == 0] == 0).all(), f"pruned entries of '{name}' moved"
            assert (after[name][mask == 1] != before[name][mask == 1]).any(), f"'{name}' did not train"

    def test_compressed_file_serves_like_the_reference(self, tmp_path):
        """A ``.sdkz`` file (pruned, weight-shared) made on the reference gives the same
        outputs here."""
        from sdk_core import compress

        spec = LAYER_CASES["lenet_like"].spec
        self._needs(LAYER_CASES["lenet_like"].features)
        reference = self._reference(spec, random_weights(spec, seed=10))
        compress.prune(reference, 0.8)
        books = compress.share_weights(reference, {"conv": 6, "dense": 4})
        path = tmp_path / "model.sdkz"
        compress.save_compressed(reference, path, books)
        served = compress.load(path, self.framework, self.device)
        x = inputs(spec, seed=11)
        np.testing.assert_allclose(served.predict(x), reference.predict(x), rtol=self.forward_rtol, atol=1e-4)
        held = "training:masks" not in get_manager().framework(self.framework).unsupported
        assert set(served.masks or {}) == (set(reference.masks or {}) if held else set())  # kept to fine-tune

    # -- end to end ----------------------------------------------------------------------------
    lenet_epochs: ClassVar[int] = 8

    def test_lenet5_learns_digits_through_the_cli(self, tmp_path):
        """``sdk train`` on this framework (the reference for an inference-only plugin) reaches
        >= 95 % on the digits test split, and the saved weights predict the same here through
        ``sdk predict``."""
        pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
        self._needs(LAYER_CASES["lenet_like"].features | {"optimizer:adam", "loss:cross_entropy"})
        weights = tmp_path / "lenet5.safetensors"
        sdk = [sys.executable, "-m", "sdk_core"]
        common = ["--framework", self.framework, "--device", self.device, "--json"]
        trainer = common if "train" in self.capabilities else ["--framework", REFERENCE, "--device", "cpu", "--json"]
        train = subprocess.run(
            sdk + ["train", "--epochs", str(self.lenet_epochs), "--out", str(weights), *trainer],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert train.returncode == 0, train.stderr[-2000:]
        accuracy = json.loads(train.stdout)["test"]["accuracy"]
        assert accuracy >= 0.95
        predict = subprocess.run(
            sdk + ["predict", "--weights", str(weights), *common], capture_output=True, text=True, timeout=600
        )
        assert predict.returncode == 0, predict.stderr[-2000:]
        assert json.loads(predict.stdout)["accuracy"] == pytest.approx(accuracy)

    # -- errors --------------------------------------------------------------------------------
    def test_bad_input_gives_clear_errors(self, tmp_path):
        spec = STEP_SPEC
        stack = self._stack(spec)
        with pytest.raises(SpecError, match=r"input has shape \(2, 4\), the model needs \(batch, 5\)"):
            stack.predict(np.zeros((2, 4), np.float32))
        with pytest.raises(SpecError if "train" in self.capabilities else NotAvailableError):
            stack.fit(np.zeros((2, 5), np.float32), np.zeros((3,), np.int64))
        with pytest.raises(NotAvailableError, match="unknown device 'nowhere:3'"):
            Stack(self.framework, "nowhere:3")
        corrupt = tmp_path / "corrupt.safetensors"
        corrupt.write_bytes(b"\x00" * 16)
        with pytest.raises(WeightsError, match="not a valid safetensors file"):
            stack.load(str(corrupt))
        other = tmp_path / "other.safetensors"
        Stack(REFERENCE).build(sdk_core.zoo.mlp()).save(str(other))
        with pytest.raises(WeightsError):
            stack.load(str(other))

    def test_training_is_refused_clearly_when_inference_only(self):
        if "train" in self.capabilities:
            pytest.skip(f"plugin '{self.framework}' trains")
        stack = self._stack(STEP_SPEC)
        x, y = inputs(STEP_SPEC), targets(STEP_SPEC, "cross_entropy")
        with pytest.raises(NotAvailableError, match=f"{self.framework} runs inference only"):
            stack.fit(x, y)
        with pytest.raises(NotAvailableError, match="runs inference only"):
            stack.train_step()
        out = subprocess.run(
            [sys.executable, "-m", "sdk_core", "train", "--framework", self.framework, "--epochs", "1"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 1 and "runs inference only" in out.stderr and "Traceback" not in out.stderr
        assert (self.framework, self.device) not in {
            (fw.name, dev.id) for fw, dev in sdk_core.usable_stacks(task="train")
        }

    def test_int8_model_follows_the_float_model(self):
        """An int8 model made from calibration inputs predicts the float model's classes and
        is several times smaller; it neither trains nor takes new weights. A plugin without
        the ``int8`` capability refuses clearly."""
        spec = sdk_core.zoo.mlp(input_dim=64, hidden=(256,), classes=5)
        stack = self._stack(spec, random_weights(spec, seed=12))
        rng = np.random.default_rng(13)
        x = rng.normal(0.0, 1.0, (256, 64)).astype(np.float32)
        if "int8" not in self.capabilities:
            with pytest.raises(NotAvailableError, match="declares no 'int8' capability"):
                stack.quantize(x)
            return
        int8 = stack.quantize(x[:128])
        assert int8.precision == "int8"
        agree = (int8.predict(x[128:]).argmax(-1) == stack.predict(x[128:]).argmax(-1)).mean()
        assert agree >= 0.9, f"int8 agrees with float32 on {agree:.0%} of the classes"
        small, large = int8.serialized(), stack.serialized()
        if small is not None and large is not None:
            assert len(small) * 2 < len(large)
        with pytest.raises(NotAvailableError):
            int8.fit(x, np.zeros(len(x), np.int64))
        with pytest.raises(NotAvailableError):
            int8.set_weights(stack.get_weights())

    def test_excluded_features_fail_clearly(self):
        declared = get_manager().framework(self.framework).unsupported
        for feature in sorted(set(self.exclusions) | set(declared)):
            kind, _, name = feature.partition(":")
            with pytest.raises(SdkError):
                if kind in ("layer", "spec", "op"):
                    case = next(c for c in LAYER_CASES.values() if feature in c.features)
                    self._stack(case.spec)
                elif kind == "optimizer":
                    float(
                        self._stack(STEP_SPEC).train_step("cross_entropy", sdk_core.Optimizer(name))(
                            inputs(STEP_SPEC), targets(STEP_SPEC, "cross_entropy")
                        )
                    )
                elif kind == "dtype":
                    self._stack(STEP_SPEC, dtype=name)
                elif kind in ("precision", "training") and name != "masks":
                    options = {"precision": name} if kind == "precision" else {name: True if name == "remat" else 2}
                    self._stack(STEP_SPEC).train_step("cross_entropy", sdk_core.Optimizer("sgd"), **options)
                elif kind in ("loss", "schedule"):
                    optimizer = sdk_core.Optimizer(
                        "sgd", schedule=sdk_core.Schedule(name, total_steps=10) if kind == "schedule" else None
                    )
                    self._stack(STEP_SPEC).train_step(name if kind == "loss" else "cross_entropy", optimizer)
                else:
                    raise SdkError(f"{feature} is checked by the tests that skip it")

    # -- generation ---------------------------------------------------------------------------
    def test_generate_decodes_like_the_reference(self):
        """With the ``generate`` capability: the key/value-cache decoder's logits at every
        step equal the reference's recomputation of the whole sequence (1e-4), for a
        left-padded batch of unequal prompts, and greedy decoding gives the reference's
        tokens. Without it, generation is refused clearly."""
        spec = sdk_core.zoo.gpt(vocab_size=32, max_len=24, dim=32, heads=4, blocks=2)
        weights = random_weights(spec, seed=21)
        stack = self._stack(spec, weights)
        prompts = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3, 5, 8, 9, 7]]
        if "generate" not in self.capabilities:
            with pytest.raises(NotAvailableError, match="generate"):
                stack.generate(prompts, 4, temperature=0)
            return
        reference = self._reference(spec, weights)
        want = reference.generate(prompts, 12, temperature=0)
        seen: list[np.ndarray] = []
        got = stack.generate(prompts, 12, temperature=0)
        for row, (g, w) in enumerate(zip(got, want, strict=True)):
            np.testing.assert_array_equal(g, w, err_msg=f"greedy tokens of prompt {row}")
        for row, prompt in enumerate(prompts):  # each step's logits: recompute the sequence on the reference
            sequence = np.asarray(prompt + got[row].tolist()[:-1], np.int64)
            padded = np.zeros((1, spec.input_shape[0]), np.int64)
            padded[0, : len(sequence)] = sequence
            logits = reference.predict(padded)[0]
            decoder = stack.manager.make_decoder(
                sdk_core.DecodeRequest(stack.framework.name, stack.model, spec, stack.device, 1, len(sequence))
            )
            first = decoder.prefill(np.asarray([prompt], np.int64), np.asarray([len(prompt)], np.int64))
            steps = [first] + [decoder.step(np.asarray([t], np.int64)) for t in got[row].tolist()[:-1]]
            for k, step_logits in enumerate(steps):
                seen.append(step_logits)
                np.testing.assert_allclose(
                    np.asarray(step_logits)[0],
                    logits[len(prompt) - 1 + k],
                    rtol=self.forward_rtol,
                    atol=self.forward_atol * 10,
                    err_msg=f"logits of prompt {row}, step {k}",
                )
        assert all(np.asarray(s).dtype == np.float32 for s in seen), "decoder logits must be float32 arrays"


def _explained(test: Any) -> Any:
    """``test``, with a note on its failure naming the features the case used that the plugin
    did not declare unsupported, and how to declare them (an undeclared feature is presumed
    supported: the kit runs it, whatever the plugin's age)."""

    @functools.wraps(test)
    def run(self: ConformanceSuite, *args: Any, **kwargs: Any) -> Any:
        self._features = set()
        try:
            return test(self, *args, **kwargs)
        except Exception as exc:  # an assertion or an sdk_core error; pytest's skips are not Exceptions
            if self._features:
                features = ", ".join(sorted(self._features))
                exc.add_note(
                    f"this case uses {features}, which plugin '{self.framework}' does not declare unsupported; "
                    "if it cannot do one of them, declare it: FrameworkHooks(..., unsupported=(...)), "
                    "and the core refuses it and the kit skips it"
                )
            raise

    return run


for _name, _test in list(vars(ConformanceSuite).items()):
    if _name.startswith("test_") and callable(_test):
        setattr(ConformanceSuite, _name, _explained(_test))
