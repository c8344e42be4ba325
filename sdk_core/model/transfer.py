"""Transfer learning: a spec's final classifier replaced by a fresh one of another size."""

from __future__ import annotations

import attrs

from ..errors import SdkError
from . import spec as S


def with_head(spec: S.ModelSpec, num_classes: int) -> tuple[S.ModelSpec, set[str]]:
    """``spec`` with its last dense layer giving ``num_classes`` outputs, and the canonical
    names of that layer's weights (which the new spec initialises afresh). Only weightless
    nodes may follow the head: a softmax, a reshape."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise SdkError(f"'num_classes' must be a whole number >= 1 (got {num_classes!r})")
    layout = spec.layout()
    head = None
    for i in range(len(spec.layers) - 1, -1, -1):
        layer = spec.layers[i]
        if isinstance(layer, S.Dense):
            head = i
            break
        prefix = f"{spec.node_names[i]}."
        if any(p.name.startswith(prefix) for p in layout):
            break  # weights after the last dense layer: it is not the classifier
    if head is None:
        raise SdkError("the model has no dense layer at its end to replace (it must be the last layer with weights)")
    old = spec.layers[head]
    assert isinstance(old, S.Dense)
    layers = list(spec.layers)
    layers[head] = attrs.evolve(old, units=num_classes)
    try:
        new = attrs.evolve(spec, layers=tuple(layers))
    except S.SpecError as exc:
        raise SdkError(f"a head of {num_classes} outputs does not fit the layers after it: {exc}") from None
    prefix = f"{spec.node_names[head]}."
    return new, {p.name for p in layout if p.name.startswith(prefix)}
