"""sdk-tpu: Google TPU device plugin."""
SDK_CORE_API = 1
