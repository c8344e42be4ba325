"""Stack.fit on the TensorFlow plugin vs a hand-written TensorFlow loop (see _overhead.py).

python benchmarks/overhead_tensorflow.py [--models mlp,lenet5] [--rounds 31] [--batch 32]
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).parent))
from _overhead import main

from sdk_core import Optimizer

L = keras.layers


def native_model(name: str) -> keras.Model:
    """The network written by hand in Keras, as a TensorFlow user would (NHWC inside)."""
    if name == "mlp":
        layers = [L.Dense(128, activation="relu"), L.Dense(64, activation="relu"), L.Dense(10)]
        shape = (64,)
    else:
        layers = [
            L.Permute((2, 3, 1)),
            L.Conv2D(6, 5, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(16, 5, activation="relu"),
            L.MaxPooling2D(2),
            L.Permute((3, 1, 2)),
            L.Flatten(),
            L.Dense(120, activation="relu"),
            L.Dense(84, activation="relu"),
            L.Dense(10),
        ]
        shape = (1, 32, 32)
    return keras.Sequential([keras.Input(shape)] + layers)


def make_native(spec, weights, optimizer):
    model = native_model(spec.name)
    with_weights = [i for i, layer in enumerate(spec.layers) if layer.params(spec.shapes[i])]
    for i, layer in zip(with_weights, [l for l in model.layers if l.weights], strict=True):
        w = weights[f"{i}.weight"]  # conv kernels: canonical (out, in, k, k) -> Keras (k, k, in, out)
        layer.set_weights([w.transpose(2, 3, 1, 0) if w.ndim == 4 else w, weights[f"{i}.bias"]])
    opt = keras.optimizers.SGD(optimizer.lr, momentum=optimizer.momentum)

    @tf.function(reduce_retracing=True)
    def update(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables, strict=True))
        return loss

    def epoch(x, y, order, batch):
        losses = [update(x[order[s : s + batch]], y[order[s : s + batch]]) for s in range(0, len(order), batch)]
        return [float(l) for l in losses]

    return epoch


if __name__ == "__main__":
    # Keras SGD with momentum follows the core rule at a constant learning rate, so the plugin
    # trains with it too and both loops compute the same numbers; Keras Adam does not follow
    # the core's Adam (epsilon is added to the bias-corrected root), so it is not compared here.
    main("tensorflow", make_native, Optimizer("sgd", lr=0.02, momentum=0.5))
