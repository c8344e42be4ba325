"""sdk-nvidia: NVIDIA GPU device plugin (NVML)."""
SDK_CORE_API = 1
