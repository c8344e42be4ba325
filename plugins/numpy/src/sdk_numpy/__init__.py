"""sdk-numpy: NumPy framework plugin: the embedded reference implementation."""
SDK_CORE_API = 1
