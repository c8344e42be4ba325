"""sdk-tensorflow: the TensorFlow framework plugin (Keras layers, tf.function steps).
TensorFlow is imported on first real use (in ``_runtime``), never by discovery."""

__version__ = "0.2.0"

from sdk_core import FrameworkHooks

# which distribution provides TensorFlow decides the devices it can drive
DISTRIBUTIONS = {
    "tensorflow": ("cpu", "cuda"),
    "tensorflow-cpu": ("cpu",),
    "tensorflow-tpu": ("cpu", "tpu"),
    "tensorflow-macos": ("cpu",),
}

plugin = FrameworkHooks(
    "tensorflow",
    runtime="sdk_tensorflow._runtime",
    api=1,
    version_of=DISTRIBUTIONS,
    priority=10,
    # data_parallel: tf.distribute.MultiWorkerMirroredStrategy; generate: tf.function decode steps
    capabilities=("train", "infer", "data_parallel", "generate"),
    refusals={
        "sharded": "TensorFlow's supported engines do data parallelism only on the CPU: Keras 3 has no "
        "TensorFlow distribution API and DTensor is experimental; train with strategy='data_parallel', "
        "or shard with torch or jax",
        "tensor_parallel": "Keras 3 has no TensorFlow distribution API and DTensor is experimental; split "
        "layers with torch or jax",
    },
)
