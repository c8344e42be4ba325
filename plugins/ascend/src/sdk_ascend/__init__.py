"""sdk-ascend: Huawei Ascend NPU device plugin."""
SDK_CORE_API = 1
