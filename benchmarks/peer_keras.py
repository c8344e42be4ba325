"""Keras 3 against the SDK on the same LeNet-5, data and optimizer, per Keras backend.

For each backend Keras supports that is installed here (jax, tensorflow, torch), in its own
process (Keras reads KERAS_BACKEND when it is imported): ``sdk_core.zoo.lenet5()`` built by the
SDK and the same architecture built in Keras (channels-last, as Keras builds it) holding the
SDK's initial weights, both trained with Adam (lr 1e-3, eps 1e-8) on
``sdk_core.digits(image_size=32)`` at batch 32. First the losses of the first steps of both on
the same batches (they train the same model), then interleaved pairs: ``model.fit`` and
``Stack.fit`` for the same epochs each, alternating which goes first; the first pair (warm-up,
compilation) is not counted. Prints Keras ms/step, SDK ms/step and the pair ratio SDK/Keras as
the median with the lowest and highest over the pairs (goal: ratio <= 1).

Keras is an optional benchmark dependency (``pip install keras``), in no pyproject.

    python benchmarks/peer_keras.py [--backends jax,tensorflow,torch] [--pairs 21] [--epochs 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time

import numpy as np

BACKENDS = ("jax", "tensorflow", "torch")
BATCH, LR, EPS, FIRST = 32, 1e-3, 1e-8, 5


def keras_lenet(keras, spec, weights: dict[str, np.ndarray]):
    """``spec`` (conv2d, relu, max_pool2d, flatten, dense layers) as a channels-last Keras model
    holding ``weights``: kernels OIHW -> HWIO, and the first dense layer's rows reordered from the
    canonical (C, H, W) flatten order to Keras' (H, W, C)."""
    c, h, w = spec.input_shape
    model = keras.Sequential([keras.Input((h, w, c))])
    loads = []
    for i, layer in enumerate(spec.layers):
        if layer.type == "conv2d":
            model.add(keras.layers.Conv2D(layer.filters, layer.kernel_size))
            loads.append([weights[f"{i}.weight"].transpose(2, 3, 1, 0), weights[f"{i}.bias"]])
        elif layer.type == "dense":
            model.add(keras.layers.Dense(layer.units))
            kernel = weights[f"{i}.weight"]
            if spec.layers[i - 1].type == "flatten" and len(spec.input_shape_of(i - 1)) == 3:
                kc, kh, kw = spec.input_shape_of(i - 1)
                kernel = kernel.reshape(kc, kh, kw, -1).transpose(1, 2, 0, 3).reshape(kc * kh * kw, -1)
            loads.append([kernel, weights[f"{i}.bias"]])
        elif layer.type == "relu":
            model.add(keras.layers.ReLU())
        elif layer.type == "max_pool2d":
            model.add(keras.layers.MaxPooling2D(layer.pool_size))
        elif layer.type == "flatten":
            model.add(keras.layers.Flatten())
        else:
            raise SystemExit(f"peer_keras.py: layer {i} ({layer.type}) of {spec.name} has no Keras twin here")
    params = [layer for layer in model.layers if layer.weights]
    for layer, values in zip(params, loads, strict=True):
        layer.set_weights(values)
    model.compile(
        optimizer=keras.optimizers.Adam(LR, epsilon=EPS),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def run_backend(backend: str, pairs: int, epochs: int) -> None:
    import keras

    from sdk_core import Optimizer, Stack, digits, zoo

    spec = zoo.lenet5()
    x, y = digits(image_size=32)[:2]
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    optimizer = Optimizer("adam", lr=LR, eps=EPS)
    stack = Stack(backend).build(spec, seed=0)
    model = keras_lenet(keras, spec, stack.get_weights())

    step = stack.train_step("cross_entropy", optimizer)
    batches = [slice(s * BATCH, (s + 1) * BATCH) for s in range(FIRST)]
    keras_losses = [float(model.train_on_batch(x_last[b], y[b])) for b in batches]
    sdk_losses = [float(step(x[b], y[b])) for b in batches]

    steps = epochs * -(-len(x) // BATCH)
    t_keras, t_sdk, ratios = [], [], []
    for r in range(pairs + 1):

        def keras_fit():
            t = time.perf_counter()
            model.fit(x_last, y, batch_size=BATCH, epochs=epochs, verbose=0)
            return time.perf_counter() - t

        def sdk_fit(r=r):
            t = time.perf_counter()
            stack.fit(x, y, epochs=epochs, batch_size=BATCH, optimizer=optimizer, seed=r)
            return time.perf_counter() - t

        if r % 2:  # alternate who goes first
            dk, ds = keras_fit(), sdk_fit()
        else:
            ds, dk = sdk_fit(), keras_fit()
        if r:  # the first pair warms up and compiles
            t_keras.append(dk)
            t_sdk.append(ds)
            ratios.append(ds / dk)
    print(
        f"{backend:<10} {1e3 * statistics.median(t_keras) / steps:9.3f} {1e3 * statistics.median(t_sdk) / steps:9.3f} "
        f"{statistics.median(ratios):6.3f} {min(ratios):6.3f}..{max(ratios):<6.3f}"
    )
    print(f"{'':10} first {FIRST} losses keras {' '.join(f'{v:.4f}' for v in keras_losses)}")
    print(f"{'':10} first {FIRST} losses sdk   {' '.join(f'{v:.4f}' for v in sdk_losses)}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--pairs", type=int, default=21, help="interleaved pairs counted (after one warm-up pair)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each fit in a pair (45 steps each)")
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)  # the per-backend subprocess
    args = parser.parse_args()
    if importlib.util.find_spec("keras") is None:
        print("peer_keras.py needs Keras 3, an optional benchmark dependency: pip install keras", file=sys.stderr)
        raise SystemExit(2)
    if args.backend:
        run_backend(args.backend, args.pairs, args.epochs)
        return
    wanted = [b for b in args.backends.split(",") if b]
    unknown = [b for b in wanted if b not in BACKENDS]
    if unknown:
        print(f"peer_keras.py: unknown backend {unknown[0]!r} (Keras backends: {', '.join(BACKENDS)})", file=sys.stderr)
        raise SystemExit(2)
    print(
        f"Keras 3 vs the SDK: LeNet-5, digits 32x32, batch {BATCH}, Adam lr {LR} eps {EPS}, "
        f"{args.pairs} interleaved pairs of {args.epochs} epochs each after one warm-up pair"
    )
    print(f"{'backend':<10} {'keras ms':>9} {'sdk ms':>9} {'ratio':>6} {'min..max':>14}   (ms/step; ratio SDK/Keras)")
    failed = 0
    for backend in wanted:
        if importlib.util.find_spec(backend) is None:
            print(f"{backend:<10} skipped: {backend} is not installed")
            continue
        sizes = ["--pairs", str(args.pairs), "--epochs", str(args.epochs)]
        sys.stdout.flush()  # this process's lines before the subprocess's
        result = subprocess.run(
            [sys.executable, __file__, "--backend", backend, *sizes], env={**os.environ, "KERAS_BACKEND": backend}
        )
        if result.returncode:
            print(f"{backend:<10} failed (exit {result.returncode}; its errors are above)")
            failed = 1
    raise SystemExit(failed)


if __name__ == "__main__":
    main()
