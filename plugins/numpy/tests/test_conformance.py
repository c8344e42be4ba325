"""The reference passes its own kit: files, errors, portability and discovery are real checks
even where the numerics compare the reference with itself."""

from sdk_core.testing import ConformanceSuite


class TestConformance(ConformanceSuite):
    framework = "numpy"
