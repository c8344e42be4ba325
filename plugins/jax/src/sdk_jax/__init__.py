"""sdk-jax: JAX framework plugin (jax.jit steps, optax optimizers)."""
SDK_CORE_API = 1
