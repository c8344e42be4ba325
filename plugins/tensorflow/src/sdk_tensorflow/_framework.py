"""TensorFlow and Keras, imported quietly and with Keras on the TensorFlow backend.

TensorFlow's C++ start-up logs are hidden unless the user set ``TF_CPP_MIN_LOG_LEVEL``. Keras
3 picks its backend once, on import: ``KERAS_BACKEND`` is set to ``tensorflow`` only for that
import (when the user set nothing) and removed again; a Keras already running on another
backend is refused with a clear error.
"""

from __future__ import annotations

import os
import sys

from sdk_core import NotAvailableError
from sdk_core.runtime.world import from_environ

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if from_environ().size > 1:
    # A worker of a data-parallel job computes each global batch's gradient as the sum of the
    # ranks' shards. With oneDNN's cpu rewrites, TensorFlow's convolution gradients jump (0.1-0.5%)
    # under such a regrouping, so 2 processes and 1 went apart (2.7e-4 in LeNet-5's loss after 2
    # epochs); with TensorFlow's own kernels they agree to 1e-8. TF_ENABLE_ONEDNN_OPTS=1 keeps oneDNN.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf


def _import_keras():
    if "keras" not in sys.modules and "KERAS_BACKEND" not in os.environ:
        os.environ["KERAS_BACKEND"] = "tensorflow"
        try:
            import keras
        finally:
            os.environ.pop("KERAS_BACKEND", None)
    else:
        try:
            import keras
        except ImportError as exc:  # e.g. KERAS_BACKEND=numpy without jax installed
            raise NotAvailableError(
                f"the tensorflow plugin needs Keras on the tensorflow backend, "
                f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r} failed to load: {exc}"
            ) from None
    if keras.backend.backend() != "tensorflow":
        raise NotAvailableError(
            f"the tensorflow plugin needs Keras on the tensorflow backend, "
            f"this process runs it on '{keras.backend.backend()}' "
            f"(KERAS_BACKEND or ~/.keras/keras.json)"
        )
    return keras


keras = _import_keras()

__all__ = ["keras", "tf"]
