"""sdk-torch: PyTorch framework plugin."""
SDK_CORE_API = 1
