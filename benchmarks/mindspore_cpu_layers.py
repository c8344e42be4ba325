"""The MindSpore plugin's CPU convolution and batch norm against MindSpore's own cells.

One training-style call (forward and gradients of the input and weights, jit-compiled) of a
ResNet-50 layer, the plugin's cell against the baseline, in interleaved pairs in one process
(median and range of the pair ratios); then the peak memory the call adds, each cell in a
fresh process. A ratio under 1 means the plugin's cell is faster or smaller.

python benchmarks/mindspore_cpu_layers.py [--rounds 11] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

# case: (input shape without the batch, the layer, the baselines)
CASES = {
    "conv 3x3/1, 64 ch, 56x56": ((64, 56, 56), ("conv", 64, 3, 1, 1), ("mindspore",)),
    "conv 1x1/2, 256 -> 512, 56x56": ((256, 56, 56), ("conv", 512, 1, 2, 0), ("mindspore",)),
    "conv 7x7/2, 3 -> 64, 224x224": ((3, 224, 224), ("conv", 64, 7, 2, 3), ("mindspore",)),
    "batchnorm, 64 ch, 56x56": ((64, 56, 56), ("batchnorm",), ("mindspore", "elementwise")),
}


def _target():
    """Build a stack first, for the plugin's CPU settings; its device."""
    from sdk_core import Stack, zoo

    return Stack("mindspore").build(zoo.mlp()).device


def _elementwise_batchnorm(channels: int):
    """Batch norm (with the core's running statistics) written out in elementwise operations:
    how the plugin computed it before it used MindSpore's kernel."""
    from mindspore import Parameter, Tensor, nn, ops

    class Written(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.weight = Parameter(Tensor(np.ones(channels, np.float32)), name="weight")
            self.bias = Parameter(Tensor(np.zeros(channels, np.float32)), name="bias")
            self.mean = Parameter(Tensor(np.zeros(channels, np.float32)), name="mean", requires_grad=False)
            self.var = Parameter(Tensor(np.ones(channels, np.float32)), name="var", requires_grad=False)

        def construct(self, x):
            shape, n = (1, -1, 1, 1), x.size // x.shape[1]
            mean = x.mean((0, 2, 3))
            var = ((x - mean.reshape(shape)) ** 2).mean((0, 2, 3))
            ops.assign(self.mean, 0.9 * self.mean + 0.1 * mean)
            ops.assign(self.var, 0.9 * self.var + 0.1 * var * (n / (n - 1)))
            y = (x - mean.reshape(shape)) / ops.sqrt(var.reshape(shape) + 1e-5)
            return y * self.weight.reshape(shape) + self.bias.reshape(shape)

    return Written()


def _cell(case: str, side: str):
    from mindspore import nn

    from sdk_core.model import spec as S
    from sdk_mindspore._layers import BatchNorm, UnfoldConv2d

    shape, layer, _ = CASES[case]
    if layer[0] == "conv":
        _, filters, k, stride, padding = layer
        if side == "plugin":
            return UnfoldConv2d(shape, S.Conv2D(filters, k, stride=stride, padding=padding, bias=False))
        return nn.Conv2d(shape[0], filters, k, stride, pad_mode="pad", padding=padding, has_bias=False)
    if side == "plugin":
        return BatchNorm(shape[0], S.BatchNorm())
    if side == "elementwise":
        return _elementwise_batchnorm(shape[0])
    return nn.BatchNorm2d(shape[0], momentum=0.9, use_batch_statistics=True)


def _call(case: str, side: str, batch: int):
    """A call of the jit-compiled forward and gradients of ``side``'s cell on a fixed batch."""
    import mindspore as ms
    from mindspore import Tensor

    net = _cell(case, side)
    net.set_train(True)
    x = Tensor(np.random.default_rng(0).normal(size=(batch, *CASES[case][0])).astype(np.float32))

    def loss(x):
        return net(x).sum()

    grad = ms.jit(ms.value_and_grad(loss, 0, net.trainable_params()))

    def run() -> None:
        _, (dx, _) = grad(x)
        dx.asnumpy()

    return run


def child(case: str, side: str, batch: int) -> None:
    """Print the peak memory (MiB) that compiling ``side``'s call and running it twice add to
    a process, as the cpu plugin reads it (peak RSS)."""
    from sdk_core import get_manager

    device, manager = _target(), get_manager()
    run = _call(case, side, batch)
    before = manager.read_memory(device).peak
    run()
    run()
    print(json.dumps((manager.read_memory(device).peak - before) / 2**20))


def _memory(case: str, side: str, batch: int) -> float:
    cmd = [sys.executable, __file__, "--child", case, side, "--batch", str(batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="interleaved pairs + 1 warm-up round")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.batch)
        return
    _target()
    print(f"batch {args.batch}; time: median (min-max) of {args.rounds - 1} pairs; memory: peak added by one call")
    print(
        f"{'layer':32} {'baseline':12} {'plugin ms':>10} {'base ms':>10} {'time ratio':>22} "
        f"{'memory MiB':>16} {'ratio':>6}"
    )
    for case, (_, _, baselines) in CASES.items():
        for baseline in baselines:
            ours, theirs = _call(case, "plugin", args.batch), _call(case, baseline, args.batch)
            times: dict[str, list[float]] = {"plugin": [], "base": []}
            ratios = []
            for r in range(args.rounds):
                pair = [("plugin", ours), ("base", theirs)]
                took = {}
                for name, run in pair if r % 2 == 0 else pair[::-1]:
                    t = time.perf_counter()
                    run()
                    took[name] = time.perf_counter() - t
                if r:  # the first round compiles
                    times["plugin"].append(took["plugin"])
                    times["base"].append(took["base"])
                    ratios.append(took["plugin"] / took["base"])
            mem_ours, mem_base = _memory(case, "plugin", args.batch), _memory(case, baseline, args.batch)
            spread = f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
            print(
                f"{case:32} {baseline:12} {statistics.median(times['plugin']) * 1e3:10.1f} "
                f"{statistics.median(times['base']) * 1e3:10.1f} {spread:>22} "
                f"{mem_ours:7.0f} / {mem_base:<6.0f} {mem_ours / max(mem_base, 1e-9):6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
