"""Sharded training in the JAX plugin (issue #38): ZeRO stages 1-3 and tensor parallelism on a
sharded jit train like one unsharded process, each device holds its share of the weights and
of the optax state, and two processes joined through ``jax.distributed`` train like one.

One process with 4 virtual CPU devices (``--xla_force_host_platform_device_count``, which must
be set before jax is imported: hence a subprocess). ``Stack`` trains one process unsharded, so
the script asks the plugin for its step directly, with ``StepRequest(zero=..., tensor=...)``:
the sharded step spreads over every device of the job, here the 4 local ones."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import sdk_core

pytestmark = pytest.mark.skipif(
    "jax" not in sdk_core.PluginManager().frameworks() or importlib.util.find_spec("jax") is None,
    reason="needs sdk-jax",
)

COMMON = """
import json, os, sys
import numpy as np
from sdk_core import Optimizer, Stack, zoo
from sdk_core.testing.cases import inputs, targets

MODELS = {"gpt": zoo.gpt(), "lenet5": zoo.lenet5()}
# Adam's eps: the attention's key bias has a gradient of exactly zero in theory (softmax ignores
# a shift of every score), so with eps=1e-8 Adam turns its rounding noise into steps of +-lr,
# whatever the order of the sums; a larger eps keeps Adam's state and update, without that.
RULES = {"sgd": Optimizer("sgd", lr=0.1), "adam": Optimizer("adam", lr=0.01, eps=1e-3)}


def data(spec):
    return inputs(spec, 32, seed=3), targets(spec, "cross_entropy", 32, seed=4)


def start(name):
    stack = Stack("jax").build(MODELS[name], seed=0)
    return stack
"""

ONE = (
    COMMON
    + """
import jax
from sdk_core.plugins.requests import StepRequest, World


def per_device(trees):
    held = {}
    for leaf in jax.tree.leaves(trees):
        for shard in leaf.addressable_shards:
            held[str(shard.device)] = held.get(str(shard.device), 0) + shard.data.nbytes
    return sorted(held.values())


def run(name, rule, zero=0, tensor=1):
    stack = start(name)
    spec = stack.spec
    if zero or tensor > 1:
        request = StepRequest("jax", stack.model, spec, stack.device, "cross_entropy", RULES[rule],
                              world=World(0, 1), zero=zero, tensor=tensor)
        step = stack.manager.make_train_step(request)
    else:
        step = stack.train_step("cross_entropy", RULES[rule])
    x, y = data(spec)
    losses = [float(step(x, y)) for _ in range(3)]
    return stack, step, losses


out = {"devices": len(jax.devices()), "runs": {}, "held": {}}
for name, configs in (("gpt", [(1, 1), (2, 1), (3, 1), (3, 2)]), ("lenet5", [(1, 1), (2, 1), (3, 1)])):
    for rule in RULES:
        stack, step, losses = run(name, rule)
        ref = stack.get_weights()
        out["runs"][f"{name} {rule}"] = losses
        for zero, tensor in configs:
            stack, step, losses = run(name, rule, zero, tensor)
            got = stack.get_weights()
            error = max(float(np.abs(got[k] - ref[k]).max()) for k in ref)
            spread = set().union(*(a.sharding.device_set for a in stack.model.params.values()))
            out["runs"][f"{name} {rule} zero{zero} tensor{tensor}"] = losses + [error, len(spread)]
            if rule == "adam" and name == "gpt" and tensor == 1:
                opt = step.opt_state[0]
                slots = [l for l in jax.tree.leaves(opt) if l.ndim == 2]
                out["held"][zero] = {
                    "params": per_device(stack.model.params),
                    "opt": per_device(opt),
                    "param_total": sum(l.nbytes for l in jax.tree.leaves(stack.model.params)),
                    "opt_total": sum(l.nbytes for l in jax.tree.leaves(opt)),
                    "largest": max(l.nbytes for l in jax.tree.leaves(stack.model.params)),
                    "slot_devices": sorted({len(l.sharding.device_set) for l in slots}),
                    "slots_split": sum(not l.sharding.is_fully_replicated for l in slots),
                    "slots": len(slots),
                }
stack = Stack("jax").build(zoo.gpt(heads=2))
try:
    run_step = stack.manager.make_train_step(StepRequest("jax", stack.model, stack.spec, stack.device,
        "cross_entropy", RULES["sgd"], world=World(0, 1), zero=1, tensor=4))
except Exception as e:
    out["refused"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""
)


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    script = tmp_path_factory.mktemp("sharded") / "one.py"
    script.write_text(ONE)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("model", ["gpt", "lenet5"])
@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_each_stage_and_tensor_parallel_train_like_one_unsharded_device(four_devices, model, rule):
    assert four_devices["devices"] == 4
    runs = four_devices["runs"]
    reference = runs[f"{model} {rule}"]
    sharded = {k: v for k, v in runs.items() if k.startswith(f"{model} {rule} ")}
    assert len(sharded) == (4 if model == "gpt" else 3)
    for name, (*losses, error, spread) in sharded.items():
        assert spread == 4, f"{name}: the step kept the weights on {spread} of the 4 devices"
        assert losses == pytest.approx(reference, rel=1e-5, abs=1e-5), name
        assert error < 1e-5, f"{name}: final weights {error} from the unsharded run's"


def test_each_device_holds_its_share_of_weights_and_optimizer_state(four_devices):
    for zero, held in four_devices["held"].items():
        assert len(held["opt"]) == 4 and max(held["opt"]) <= held["opt_total"] / 4 + held["largest"], zero
        # the optax state's slots are spread over the 4 devices, not left on one (jit(tx.init) did that)
        assert held["slot_devices"] == [4] and held["slots_split"] == held["slots"], zero
        whole = max(held["params"]) >= held["param_total"]
        assert whole == (zero != "3"), f"stage {zero}: parameters per device {held['params']}"
        if zero == "3":
            assert max(held["params"]) <= held["param_total"] / 4 + held["largest"]


def test_tensor_parallel_refuses_heads_it_cannot_split(four_devices):
    why = "layer 1 (transformer_block): 'tensor_parallel' 4 must divide its 2 heads and its width 64"
    assert four_devices["refused"] == f"NotAvailableError: {why}"


TWO = (
    COMMON
    + """
stack = start("gpt")
world, sharded = stack._join("zero3")
out = {"sharded": None if sharded is None else sharded.stage}
for rule in RULES:
    stack = start("gpt")
    step = stack.train_step("cross_entropy", RULES[rule], world=world, sharded=sharded)
    x, y = data(stack.spec)
    if world is not None:
        x, y = x[world.rank * 16 : (world.rank + 1) * 16], y[world.rank * 16 : (world.rank + 1) * 16]
    losses = [float(step(x, y)) for _ in range(3)]
    weights = stack.get_weights()
    settings = ("cross_entropy", RULES[rule], 1, "fp32", False, world, sharded)
    state = stack.optimizer_state(*settings)
    stack.set_weights(weights)  # full arrays in, resharded: training goes on where it was
    stack.set_optimizer_state(state, *settings)
    losses.append(float(step(x, y)))
    out[rule] = {"losses": losses, "weights": {k: v.tolist() for k, v in weights.items()},
                 "predict": stack.predict(data(stack.spec)[0][:4]).tolist(),
                 "exp_avg": {k: v.tolist() for k, v in state.slots.get("exp_avg", {}).items()}}
with open(sys.argv[1], "w") as f:  # not stdout: a rank blocked on a full pipe would hold the others
    json.dump(out, f)
"""
)


def test_two_processes_through_jax_distributed_train_stage3_like_one(tmp_path):
    from sdk_core.distributed.launch import free_port

    script = tmp_path / "two.py"
    script.write_text(TWO)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    one = subprocess.run([sys.executable, str(script), tmp_path / "one.json"], capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    alone = json.loads((tmp_path / "one.json").read_text())
    assert alone["sharded"] is None
    port, ranks = str(free_port()), []
    for rank in range(2):
        rank_env = {**env, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        ranks.append(subprocess.Popen([sys.executable, str(script), tmp_path / f"{rank}.json"], env=rank_env))
    assert [p.wait(timeout=300) for p in ranks] == [0, 0]
    results = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    for rule in ("sgd", "adam"):
        assert results[0]["sharded"] == 3
        assert results[0][rule]["losses"] == pytest.approx(alone[rule]["losses"], rel=1e-5, abs=1e-5)
        assert results[0][rule]["weights"] == results[1][rule]["weights"], "every rank gets the whole weights"
        for key, value in alone[rule]["weights"].items():
            np.testing.assert_allclose(np.asarray(results[0][rule]["weights"][key]), value, atol=1e-5, err_msg=key)
        np.testing.assert_allclose(results[1][rule]["predict"], alone[rule]["predict"], atol=1e-4)
    moments = [r["adam"]["exp_avg"] for r in (alone, *results)]  # the optax state, gathered whole
    assert set(moments[0]) == set(moments[1]) == set(moments[2]) and moments[0]
    for key, value in moments[0].items():
        np.testing.assert_allclose(moments[1][key], value, atol=1e-6, err_msg=key)
        assert moments[1][key] == moments[2][key], key
