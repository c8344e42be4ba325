"""The framework-neutral model layer: what a network is, how it trains and how its weights are
stored, with no knowledge of plugins.

- :mod:`~sdk_core.model.spec`: ``ModelSpec`` and the layer types; the canonical weight layout.
- :mod:`~sdk_core.model.optim`: ``Optimizer``, ``Schedule`` and the losses.
- :mod:`~sdk_core.model.weights`: safetensors files, written atomically.
- :mod:`~sdk_core.model.zoo`: ready-made specs (MLP, LeNet-5, GPT).
- :mod:`~sdk_core.model.data`: bundled and generated data sets; random batches.
- :mod:`~sdk_core.model.metrics`: losses and accuracy on numpy outputs.
- :mod:`~sdk_core.model.estimate`: parameters, FLOPs and memory estimated from a spec.
"""
