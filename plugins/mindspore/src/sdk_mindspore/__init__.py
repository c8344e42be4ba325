"""sdk-mindspore: MindSpore framework plugin (nn.Cell, value_and_grad + jit)."""
SDK_CORE_API = 1
