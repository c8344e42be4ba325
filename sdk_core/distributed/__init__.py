"""Data-parallel jobs: the launcher behind ``sdk launch``. The training itself runs on each
framework's own engine (``Stack.fit(..., strategy="data_parallel")``, see
:mod:`sdk_core.runtime.world`)."""

from .launch import Job, launch
from .ray import launch_ray

__all__ = ["Job", "launch", "launch_ray"]
