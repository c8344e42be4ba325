"""sdk-jax: the JAX framework plugin (jax.jit steps, optax optimizers). jax is imported on
first real use (in ``_runtime``), never by discovery."""

__version__ = "0.2.0"

from sdk_core import FrameworkHooks

plugin = FrameworkHooks("jax", "sdk_jax._runtime", {"jax": ("cpu", "cuda", "tpu")}, priority=15)
