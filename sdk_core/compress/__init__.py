"""Model compression on any framework: pruning, weight sharing, int8 quantization and the
``.sdkz`` file (Deep Compression, Han et al. 2016).

::

    from sdk_core import compress
    masks = compress.prune(stack, 0.9)                  # magnitude pruning, masks held in training
    books = compress.share_weights(stack, {"conv": 8, "dense": 5})
    compress.save_compressed(stack, "model.sdkz", books)
    served = compress.load("model.sdkz", framework="jax")
"""

from __future__ import annotations

from .pipeline import compress
from .pruning import Schedule, magnitude_masks, prune, prune_gradually, sparsity
from .quantize import Quantized, quantize
from .sharing import Codebook, kmeans, share_weights
from .storage import load, save_compressed
from .structured import latency_ratio, prune_structured

__all__ = [
    "Codebook",
    "Quantized",
    "Schedule",
    "compress",
    "kmeans",
    "latency_ratio",
    "load",
    "magnitude_masks",
    "prune",
    "prune_gradually",
    "prune_structured",
    "quantize",
    "save_compressed",
    "share_weights",
    "sparsity",
]
