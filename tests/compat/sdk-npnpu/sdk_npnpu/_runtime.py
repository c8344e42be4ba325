"""The 0.1 runtime contract: build(request) -> model, train_step(request) -> step(x, y) -> loss,
predict(model) -> predict(x) -> numpy array. The work is the NumPy plugin's."""

from sdk_numpy import _runtime


def build(request):
    return _runtime.build(request)


def train_step(request):
    return _runtime.train_step(request)


def predict(model):
    return _runtime.predict(model)
