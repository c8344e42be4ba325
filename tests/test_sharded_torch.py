"""Sharded training (ZeRO stages 1-3, tensor parallelism) with torch on loopback: two processes
step like one with the same global batch, each rank holds its share, sharded checkpoints
survive a rank killed while saving and resume on 1 and 4 processes, ``sdk checkpoint
consolidate`` gives an ordinary weights file; frameworks without the engine refuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import sdk_core
from sdk_core import NotAvailableError, Stack, zoo

FRAMEWORKS = sdk_core.PluginManager().frameworks()
pytestmark = pytest.mark.skipif("torch" not in FRAMEWORKS, reason="needs sdk-torch")
SDK = [sys.executable, "-m", "sdk_core"]

STEP = """
import json, os, sys
import numpy as np
from sdk_core import Optimizer, Sharded, Stack, zoo
from sdk_core.testing.cases import inputs, targets

model, strategies = sys.argv[1], sys.argv[2].split(",")
spec = zoo.gpt() if model == "gpt" else zoo.lenet5()
x, y = inputs(spec, 24, seed=3), targets(spec, "cross_entropy", 24, seed=4)
SHARDINGS = {"zero1": Sharded(1), "zero2": Sharded(2), "zero3": Sharded(3), "tp2": Sharded(3, tensor=2)}
out = {}
for strategy in strategies:
    for rule in (Optimizer("sgd", lr=0.1, momentum=0.9), Optimizer("adam", lr=0.01)):
        stack = Stack("torch").build(spec, seed=1)
        world, sharded = stack._join(SHARDINGS[strategy] if "RANK" in os.environ else None)
        settings = ("cross_entropy", rule, 1, "fp32", False, world, sharded)
        step = stack.train_step(*settings)
        losses = []
        for i in range(3):
            xb, yb = x[i * 8 : (i + 1) * 8], y[i * 8 : (i + 1) * 8]
            if world is not None:  # this data-parallel rank's share of the global batch
                dp, size = world.rank // sharded.tensor, world.size // sharded.tensor
                xb, yb = xb[dp * 8 // size : (dp + 1) * 8 // size], yb[dp * 8 // size : (dp + 1) * 8 // size]
            losses.append(float(step(xb, yb)))
        state = stack.optimizer_state(*settings)
        held = {}
        if world is not None:  # what this rank holds: DTensor local shards, ZeRO-1's own partition
            from sdk_torch._sharded import local_state
            local = lambda t: t.to_local() if hasattr(t, "to_local") else t
            params = list(stack.model.module.parameters())
            held = {
                "params": sum(local(p).numel() for p in params),
                "total": sum(p.numel() for p in params),
                "largest": max(p.numel() for p in params),
                "state": sum(local(v).numel() for s in local_state(step).values() for k, v in s.items() if k != "step"),
            }
        out[f"{strategy}/{rule.name}"] = {
            "losses": losses,
            "weights": {k: v.tolist() for k, v in stack.get_weights().items()},
            "state": {f"{s}/{k}": v.tolist() for s, a in state.slots.items() for k, v in a.items()},
            "held": held,
        }
print(json.dumps(out))
"""


def _job(script, args, n, env=None, timeout=300):
    """``script args`` as ``n`` processes of a job on loopback (one process: no job)."""
    from sdk_core.distributed.launch import free_port

    base = {**os.environ, "SDK_DIST_TIMEOUT": "30", **(env or {})}
    if n == 1:
        return [subprocess.run([sys.executable, str(script), *args], env=base, capture_output=True, text=True)]
    port = str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), *args],
            env={**base, "RANK": str(r), "WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(n)
    ]
    outputs = [p.communicate(timeout=timeout) for p in procs]  # read while they run: a full pipe blocks a rank
    return [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outputs, strict=True)]


@pytest.mark.parametrize(("model", "strategies"), [("gpt", "zero1,zero2,zero3,tp2"), ("lenet5", "zero1,zero2,zero3")])
def test_two_sharded_processes_step_like_one_and_hold_their_share(model, strategies, tmp_path):
    script = tmp_path / "step.py"
    script.write_text(STEP)
    (alone,) = _job(script, [model, strategies], 1)
    assert alone.returncode == 0, alone.stderr[-3000:]
    one = json.loads(alone.stdout)
    ranks = _job(script, [model, strategies], 2)
    assert all(r.returncode == 0 for r in ranks), ranks[0].stderr[-3000:] + ranks[1].stderr[-3000:]
    both = [json.loads(r.stdout) for r in ranks]
    for key, ref in one.items():
        got = both[0][key]
        np.testing.assert_allclose(got["losses"], ref["losses"], rtol=0, atol=1e-5, err_msg=key)
        assert got["weights"] == both[1][key]["weights"], f"{key}: ranks must gather the same weights"
        # Adam divides by sqrt(v): a gradient that is zero but for rounding (the key bias, to
        # which attention is invariant) becomes a full step, so Adam's weights get a looser bound
        sgd = key.endswith("sgd")
        for name, value in ref["weights"].items():
            if not sgd and "attn.k.bias" in name:
                continue
            np.testing.assert_allclose(got["weights"][name], value, rtol=0, atol=1e-5 if sgd else 5e-5, err_msg=name)
        for name, value in ref["state"].items():
            np.testing.assert_allclose(got["state"][name], value, rtol=0, atol=1e-5, err_msg=f"{key} {name}")
        for rank in both:
            held, n = rank[key]["held"], 2
            slots = 1 if sgd else 2
            share = held["total"] // n + held["largest"]
            # the optimizer state is sharded at every stage; the parameters at stage 3 (and,
            # split by the tensor-parallel plan, when tensor > 1)
            assert held["state"] <= slots * share, (key, held)
            if key.startswith("zero3"):
                assert held["params"] <= share, (key, held)


def test_tensor_parallel_with_data_parallel_over_four_processes_steps_like_one(tmp_path):
    """tensor=2 over 4 processes: a 2 x 2 mesh, two data-parallel replicas of a two-way split,
    each pair of ranks reading one half of the global batch, gives one process's losses."""
    script = tmp_path / "step.py"
    script.write_text(STEP)
    (alone,) = _job(script, ["gpt", "tp2"], 1)
    assert alone.returncode == 0, alone.stderr[-3000:]
    one = json.loads(alone.stdout)
    ranks = _job(script, ["gpt", "tp2"], 4)
    assert all(r.returncode == 0 for r in ranks), "".join(r.stderr[-2000:] for r in ranks)
    four = [json.loads(r.stdout) for r in ranks]
    for key, ref in one.items():
        np.testing.assert_allclose(four[0][key]["losses"], ref["losses"], rtol=0, atol=1e-5, err_msg=key)
        assert all(r[key]["weights"] == four[0][key]["weights"] for r in four), f"{key}: ranks gather one model"
        if key.endswith("sgd"):
            for name, value in ref["weights"].items():
                np.testing.assert_allclose(four[0][key]["weights"][name], value, rtol=0, atol=1e-5, err_msg=name)


FIT = """
import json, os, sys
import numpy as np
from sdk_core import Optimizer, Stack, zoo
from sdk_core.runtime import checkpoint
from sdk_core.testing.cases import inputs, targets

directory, epochs, crash = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if crash and os.environ.get("RANK") == "1":  # rank 1 dies during the save of update `crash`, its shard written
    save = checkpoint.Checkpoints.save_sharded
    def dying(self, weights, state, run, position, *rest):
        if position.step == crash:
            rank, size = rest[1], rest[2]
            folder = self.directory / f"step-{position.step:010d}"
            folder.mkdir(exist_ok=True)
            checkpoint.save_weights(folder / f"rank-{rank}-of-{size}.safetensors", weights, {})
            os._exit(9)
        return save(self, weights, state, run, position, *rest)
    checkpoint.Checkpoints.save_sharded = dying
spec = zoo.gpt()
x, y = inputs(spec, 32, seed=3), targets(spec, "cross_entropy", 32, seed=4)
stack = Stack("torch").build(spec, seed=1)
strategy = "zero3" if "RANK" in os.environ else None
history = stack.fit(
    x, y, epochs=epochs, batch_size=8, optimizer=Optimizer("adam", lr=0.01), strategy=strategy,
    checkpoint_dir=directory or None, checkpoint_every=2 if directory else None, keep_checkpoints=10,
    resume=bool(directory),
)
weights = stack.get_weights()
print(json.dumps({"loss": history.loss, "out": stack.predict(x[:4]).tolist()}))
"""


def test_sharded_checkpoints_survive_a_killed_rank_and_resume_on_1_then_4_processes(tmp_path):
    script, ckpt = tmp_path / "fit.py", tmp_path / "ckpt"
    script.write_text(FIT)
    (plain,) = _job(script, ["", "3", "0"], 1)  # the uninterrupted run: 3 epochs of 4 updates
    assert plain.returncode == 0, plain.stderr[-3000:]
    want = json.loads(plain.stdout)
    # 2 processes, ZeRO-3: rank 1 is killed while the checkpoint of update 6 is being written
    crashed = _job(script, [str(ckpt), "3", "6"], 2)
    assert crashed[1].returncode == 9 and crashed[0].returncode != 0
    assert sorted(p.name for p in (ckpt / "step-0000000004").iterdir()) == [
        "manifest.json",
        "rank-0-of-2.safetensors",
        "rank-1-of-2.safetensors",
    ]
    assert not (ckpt / "step-0000000006" / "manifest.json").exists()
    # 1 process resumes from update 4 (the one before the broken save) through epoch 2 ...
    (one,) = _job(script, [str(ckpt), "2", "0"], 1)
    assert one.returncode == 0, one.stderr[-3000:]
    assert (ckpt / "step-0000000008.safetensors").exists()
    # ... and 4 processes finish the run: the loss curve of the uninterrupted run
    four = _job(script, [str(ckpt), "3", "0"], 4, timeout=600)
    assert all(r.returncode == 0 for r in four), four[0].stderr[-3000:]
    got = json.loads(four[0].stdout)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=0, atol=1e-5)
    assert (ckpt / "step-0000000012" / "rank-3-of-4.safetensors").exists()
    # the newest checkpoint as one weights file, offline, served by NumPy
    full = tmp_path / "full.safetensors"
    done = subprocess.run(
        SDK + ["checkpoint", "consolidate", str(ckpt), "--out", str(full)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    from sdk_core.testing.cases import inputs

    reference = "numpy" if "numpy" in FRAMEWORKS else "torch"
    served = Stack(reference).load(str(full)).predict(inputs(zoo.gpt(), 32, seed=3)[:4])
    np.testing.assert_allclose(served, np.asarray(got["out"]), rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(got["out"]), np.asarray(want["out"]), rtol=0, atol=1e-4)
    bad = subprocess.run(
        SDK + ["checkpoint", "consolidate", str(tmp_path), "--out", str(full)], capture_output=True, text=True
    )
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "no complete checkpoint" in bad.stderr


@pytest.mark.parametrize("framework", ["tensorflow", "mindspore", "numpy"])
def test_frameworks_without_a_sharding_engine_refuse_with_their_reason(framework):
    if framework not in FRAMEWORKS:
        pytest.skip(f"needs sdk-{framework}")
    stack = Stack(framework).build(zoo.mlp())
    reason = stack.framework.refusals.get("sharded")
    assert reason, f"{framework} must say why it cannot shard"
    with pytest.raises(NotAvailableError, match=f"framework '{framework}' cannot train sharded") as info:
        stack.fit(np.zeros((4, 64), np.float32), np.zeros(4, np.int64), strategy="zero3")
    assert reason in str(info.value)
