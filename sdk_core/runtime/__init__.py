"""The runtime layer: :class:`~sdk_core.runtime.stack.Stack` (build, fit, predict, save, load
on one framework and device), the choice of a stack (:mod:`~sdk_core.runtime.select`) and
console output (:mod:`~sdk_core.runtime.console`)."""
