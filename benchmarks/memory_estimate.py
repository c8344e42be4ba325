"""The memory estimate (`sdk estimate`, ``sdk_core.model.estimate.training_memory``) against
the peak memory torch's CPU allocator reports for real training steps, and the saving of
activation checkpointing.

For each model and batch size: build it on torch (Adam), take one step (optimizer state,
kernels), then profile a second step with ``torch.profiler`` (``profile_memory=True``): every
allocation and free of the step in time order, whose running sum peaks at the step's peak.
Measured = that peak + the memory held across steps (weights and Adam's two moments; the
gradients are freed and allocated again inside the step, so the peak has them). Estimated =
``training_memory(spec, batch)["total"]``. Target: within 25 % for the MLP, LeNet-5 and the
GPT at three batch sizes each. Then the GPT at sequence length 1024, with and without
``remat=True``: its peak must drop clearly.

    python benchmarks/memory_estimate.py
"""

from __future__ import annotations

import torch

from sdk_core import Optimizer, Stack, zoo
from sdk_core.model.data import make_batch
from sdk_core.model.estimate import training_memory

CASES = {
    "mlp 256-1024-1024-10": (zoo.mlp(input_dim=256, hidden=(1024, 1024)), (4096, 8192, 16384)),
    "lenet5": (zoo.lenet5(), (512, 1024, 2048)),
    "gpt": (zoo.gpt(), (64, 128, 256)),
}
LONG_GPT = zoo.gpt(vocab_size=64, max_len=1024, dim=128, heads=4, blocks=4)


def measured_peak(spec, batch: int, remat: bool = False) -> int:
    """Bytes: the allocator's peak during one training step plus the state held across steps."""
    stack = Stack("torch").build(spec)
    step = stack.train_step("cross_entropy", Optimizer("adam", lr=1e-3), remat=remat)
    x, y = make_batch(spec, "cross_entropy", batch)
    float(step(x, y))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        float(step(x, y))
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    held = sum(p.numel() * p.element_size() * 3 for p in stack.model.module.parameters())  # weights, m, v
    return peak + held


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def main() -> None:
    torch.set_num_threads(1)
    print("model                 batch  estimate MiB  measured MiB  estimate/measured")
    ratios = []
    for name, (spec, batches) in CASES.items():
        for batch in batches:
            got, want = measured_peak(spec, batch), training_memory(spec, batch)["total"]
            ratios.append(want / got)
            print(f"{name:<21} {batch:>5}  {mib(want):>12}  {mib(got):>12}  {want / got:>17.2f}")
    inside = sum(0.75 <= r <= 1.25 for r in ratios)
    print(f"{inside} of {len(ratios)} within 25 %; estimate/measured from {min(ratios):.2f} to {max(ratios):.2f}")

    print(f"\nGPT, sequence {LONG_GPT.input_shape[0]}, width 128, 4 blocks, batch 8: peak of a training step")
    peaks = {r: (measured_peak(LONG_GPT, 8, r), training_memory(LONG_GPT, 8, remat=r)["total"]) for r in (False, True)}
    for remat, (got, want) in peaks.items():
        label = "with remat   " if remat else "without remat"
        print(f"  {label}: {mib(got)} MiB measured, {mib(want)} MiB estimated")
    (plain, plain_want), (kept, kept_want) = peaks[False], peaks[True]
    print(f"  checkpointing keeps {kept / plain:.2f} of the peak (estimated {kept_want / plain_want:.2f})")


if __name__ == "__main__":
    main()
