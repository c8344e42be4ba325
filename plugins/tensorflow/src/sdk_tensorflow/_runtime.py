"""Devices, weights conversion, the tf.function training step and predict."""
from __future__ import annotations

import os
from typing import Callable, Mapping

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: keep its C++ logs quiet

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from sdk_core import BuildRequest, DeviceInfo, StepRequest  # noqa: E402

from ._layers import SpecModel, variables  # noqa: E402
from ._optim import CoreOptimizer  # noqa: E402

KINDS = {"cpu": "CPU", "cuda": "GPU", "tpu": "TPU"}


def tf_device(device: DeviceInfo) -> str:
    return f"/{KINDS[device.kind]}:{device.index}"


class TfModel:
    def __init__(self, request: BuildRequest) -> None:
        spec = request.spec
        self.spec, self.device, self.dtype = spec, tf_device(request.device), tf.as_dtype(request.dtype)
        tf.random.set_seed(request.seed)
        self.in_dtype = tf.int64 if spec.input_dtype == "int64" else self.dtype
        with tf.device(self.device):
            self.module = SpecModel(spec, request.dtype, request.seed)
            self.module(tf.zeros((1,) + spec.input_shape, self.in_dtype))  # creates the variables
        self.vars = variables(spec, self.module)

    def get_weights(self) -> dict[str, np.ndarray]:
        out = {}
        for name, (var, perm) in self.vars.items():
            value = var.numpy()
            out[name] = value.transpose(perm[1]).copy() if perm else value
        return out

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        for name, value in weights.items():
            var, perm = self.vars[name]
            var.assign(value.transpose(perm[0]) if perm else value)


def loss_fn(name: str):
    if name == "cross_entropy":
        return lambda out, y: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out))
    return lambda out, y: tf.reduce_mean(tf.square(out - y))


def train_step(request: StepRequest) -> Callable[[np.ndarray, np.ndarray], tf.Tensor]:
    model: TfModel = request.model
    module, loss_of = model.module, loss_fn(request.loss)
    weights = module.trainable_variables
    optimizer = CoreOptimizer(request.optimizer)
    y_dtype = tf.int64 if request.loss == "cross_entropy" else model.dtype
    with tf.device(model.device):
        optimizer.build(weights)

    @tf.function(reduce_retracing=True)
    def update(x, y):
        with tf.GradientTape() as tape:
            loss = loss_of(module(x, training=True), y)
        if weights:
            optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    def step(x: np.ndarray, y: np.ndarray) -> tf.Tensor:
        with tf.device(model.device):
            return update(tf.convert_to_tensor(x, model.in_dtype), tf.convert_to_tensor(y, y_dtype))

    return step


def predict(model: TfModel) -> Callable[[np.ndarray], np.ndarray]:
    forward = tf.function(lambda x: model.module(x, training=False), reduce_retracing=True)

    def run(x: np.ndarray) -> np.ndarray:
        with tf.device(model.device):
            return forward(tf.convert_to_tensor(x, model.in_dtype)).numpy()

    return run
