"""`sdk train` unchanged under torchrun and under srun's environment (2 processes on loopback)
trains like one process, on every framework: torchrun's rendezvous store holds MASTER_PORT, so
a framework's own coordinator (JAX's, MindSpore's scheduler) listens on the next port."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys

import pytest

import sdk_core
from sdk_core.distributed.launch import free_port

from .test_distributed import PARALLEL

SDK = [sys.executable, "-m", "sdk_core"]
TRAIN = ["train", "--model", "mlp", "--epochs", "1", "--batch-size", "32", "--json"]
FRAMEWORKS = sdk_core.PluginManager().frameworks()
EVERY = PARALLEL  # each framework, skipped where its plugin or its engine is missing
# the launchers' variables of the process running the tests would make every run a worker
LAUNCHED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID")
CLEAN = {k: v for k, v in os.environ.items() if k not in LAUNCHED and k != "SDK_CORE_COORDINATOR_PORT"}


@pytest.fixture(autouse=True)
def _needs_the_digits():
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")


@functools.cache
def alone(framework: str) -> dict:
    out = subprocess.run(SDK + TRAIN + ["--framework", framework], capture_output=True, text=True, env=CLEAN)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def assert_like_alone(framework: str, returncode: int, stdout: str, stderr: str) -> None:
    assert returncode == 0, stderr[-3000:]
    assert stdout.count('"history"') == 1, "the JSON must be printed once, by rank 0"
    a, b = alone(framework), json.loads(stdout[stdout.index("{") :])
    assert b["history"]["loss"] == pytest.approx(a["history"]["loss"], abs=1e-4)
    assert b["test"]["loss"] == pytest.approx(a["test"]["loss"], abs=1e-4)


@pytest.mark.parametrize("framework", EVERY)
def test_sdk_train_runs_unchanged_under_torchrun(framework):
    pytest.importorskip("torch", reason="torchrun is torch's")
    sdk = shutil.which("sdk", path=os.path.dirname(sys.executable)) or shutil.which("sdk")
    if sdk is None:
        pytest.skip("needs the sdk console script")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    out = subprocess.run(
        torchrun + ["--master-port", str(free_port()), sdk, *TRAIN, "--framework", framework],
        capture_output=True,
        text=True,
        timeout=300,
        env=CLEAN,
    )
    assert_like_alone(framework, out.returncode, out.stdout, out.stderr)


@pytest.mark.parametrize("framework", [p for p in EVERY if p.values[0] in ("jax", "tensorflow", "mindspore")])
def test_sdk_train_runs_unchanged_under_srun_variables(framework):
    """What srun sets for 2 tasks on one node, plus the MASTER_ADDR/MASTER_PORT a job script
    exports, for the frameworks that start a coordinator of their own (torch and the reference
    join torch.distributed's store at MASTER_PORT whatever set the world)."""
    port = str(free_port())
    ranks = []
    for rank in range(2):
        slurm = {"SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_LOCALID": str(rank), "SLURM_NNODES": "1"}
        env = {**CLEAN, **slurm, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        ranks.append(
            subprocess.Popen(
                SDK + TRAIN + ["--framework", framework],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        (out0, err0), (out1, err1) = (p.communicate(timeout=300) for p in ranks)
    finally:
        for p in ranks:
            p.kill()
    assert ranks[1].returncode == 0 and out1 == "", err1[-3000:]
    assert_like_alone(framework, ranks[0].returncode, out0, err0)
