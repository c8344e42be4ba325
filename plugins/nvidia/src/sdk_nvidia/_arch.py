"""Peak throughput from the probed architecture and clocks.

Per streaming multiprocessor and clock: FP32 lanes (CUDA cores; an FMA counts as 2 FLOPs) and
dense tensor-core FLOPs for FP16/BF16 with FP32 accumulation (data-center parts; GeForce parts
of the same architecture may run FP32 accumulation at half that rate). Sources: NVIDIA's
architecture whitepapers (Volta, Turing, Ampere GA100/GA102, Ada, Hopper, Blackwell). Check:
H100 SXM, 132 SMs x 4096 x 1.83 GHz = 989 TFLOPS dense BF16, NVIDIA's published figure.
"""

from __future__ import annotations

# compute capability (major, minor) -> (FP32 lanes per SM, FP64 lanes per SM, tensor FP16/BF16 FLOPs per SM per clock)
ARCH = {
    (6, 0): (64, 32, 0),
    (6, 1): (128, 4, 0),
    (7, 0): (64, 32, 1024),
    (7, 2): (64, 2, 1024),
    (7, 5): (64, 2, 1024),
    (8, 0): (64, 32, 2048),
    (8, 6): (128, 2, 1024),
    (8, 7): (128, 2, 1024),
    (8, 9): (128, 2, 1024),
    (9, 0): (128, 64, 4096),
    (10, 0): (128, 64, 8192),
    (12, 0): (128, 2, 1024),
}
NAMES = {6: "Pascal", 7: "Volta/Turing", 8: "Ampere/Ada", 9: "Hopper", 10: "Blackwell", 12: "Blackwell"}


def fp32_lanes(cc: tuple[int, int]) -> int | None:
    return ARCH[cc][0] if cc in ARCH else None


def peak_flops(cc: tuple[int, int], sms: int | None, sm_clock_mhz: int | None) -> dict[str, float]:
    """FLOP/s per dtype at ``sm_clock_mhz``; empty when the architecture or a figure is unknown."""
    if cc not in ARCH or not sms or not sm_clock_mhz:
        return {}
    fp32, fp64, tensor = ARCH[cc]
    hz = sm_clock_mhz * 1e6
    out = {"float32": sms * fp32 * 2 * hz, "float64": sms * fp64 * 2 * hz}
    if tensor:
        out["float16"] = out["bfloat16"] = sms * tensor * hz
        if cc >= (8, 0):
            out["tfloat32"] = sms * tensor / 2 * hz
    return out
