"""The onnxruntime model: the core's ONNX export of a spec and its weights, run in an
``InferenceSession`` on the device's execution providers. Inference only."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnxruntime as ort

from sdk_core import BuildRequest, DeviceInfo, ModelSpec, NotAvailableError
from sdk_core.export import to_onnx
from sdk_core.export.int8 import quantize_static
from sdk_core.plugins.requests import DecodeRequest, QuantizeRequest

from . import _providers


class OrtModel:
    """Canonical weights and the ONNX model made from them; the session starts on first use
    and again after the weights change. An int8 model (``onnx`` given) is fixed."""

    def __init__(
        self,
        spec: ModelSpec,
        device: DeviceInfo,
        strict: bool,
        weights: Mapping[str, np.ndarray] | None = None,
        onnx: bytes | None = None,
    ) -> None:
        self.spec, self.device, self.strict = spec, device, strict
        self.weights = {p.name: np.zeros(p.shape, np.float32) for p in spec.layout()}
        self.weights.update({k: np.array(v, np.float32) for k, v in (weights or {}).items()})
        self.fixed = onnx is not None
        self.onnx: bytes | None = onnx
        self.session: ort.InferenceSession | None = None
        self.decoder: ort.InferenceSession | None = None  # the decoder export's session, kept like `session`
        self.input_dtype = np.int64 if spec.input_dtype == "int64" else np.float32
        self.wanted = _providers.requested(device.kind)
        self.providers = _providers.choose(self.wanted, ort.get_available_providers(), strict)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.weights.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        if self.fixed:
            raise NotAvailableError("an int8 model's weights are fixed: quantize the float model again")
        self.weights.update({k: np.array(v, np.float32) for k, v in weights.items()})
        self.onnx, self.session, self.decoder = None, None, None

    def serialize(self) -> bytes:
        if self.onnx is None:
            self.onnx = to_onnx(self.spec, self.weights).SerializeToString()
        return self.onnx

    def start(self, onnx: bytes) -> ort.InferenceSession:
        """An ``InferenceSession`` of ``onnx`` on this model's execution providers."""
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: warnings become SdkWarnings or errors
        provider_options = [
            {"device_id": str(self.device.index)} if p != _providers.CPU else {} for p in self.providers
        ]
        session = ort.InferenceSession(onnx, options, providers=self.providers, provider_options=provider_options)
        chosen = [p for p in self.wanted if p in self.providers]  # the missing ones were reported
        _providers.check_active(chosen, session.get_providers(), self.strict)
        return session

    def _session(self) -> ort.InferenceSession:
        if self.session is None:
            self.session = self.start(self.serialize())
        return self.session

    def run(self, x: Any) -> np.ndarray:
        batch = np.ascontiguousarray(x, dtype=self.input_dtype)
        out: np.ndarray = self._session().run(["y"], {"x": batch})[0]
        return out


def build(request: BuildRequest) -> OrtModel:
    return OrtModel(request.spec, request.device, request.strict)


def train_step(request: Any) -> Any:
    raise NotAvailableError("onnxruntime runs inference only")  # the core refuses first


def predict(model: OrtModel) -> Callable[[Any], np.ndarray]:
    return model.run


def quantize(request: QuantizeRequest) -> OrtModel:
    model: OrtModel = request.model
    proto = to_onnx(model.spec, model.weights)
    int8 = quantize_static(proto, request.calibration, request.method, request.per_channel)
    return OrtModel(model.spec, model.device, model.strict, model.weights, int8.SerializeToString())


def serialize(model: OrtModel) -> bytes:
    return model.serialize()


def decoder(request: DecodeRequest) -> Any:
    from ._decode import OrtDecoder

    return OrtDecoder(request.model, request.batch, request.capacity)
