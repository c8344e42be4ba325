"""The plugin layer: hook specifications, discovery and the records plugins exchange.

- :mod:`~sdk_core.plugins.hookspecs`: every ``sdk_*`` hook with its contract.
- :mod:`~sdk_core.plugins.manager`: discovery through entry points, isolation of broken
  plugins, one typed method per hook.
- :mod:`~sdk_core.plugins.records`: ``DeviceInfo``, ``FrameworkInfo``, readings, requests.
- :mod:`~sdk_core.plugins.framework`: ``FrameworkHooks``, the framework hooks written once.
- :mod:`~sdk_core.plugins.cpu`: the built-in cpu device plugin.

Plugin authors import what they need from ``sdk_core`` itself (``hookimpl``, the records,
``FrameworkHooks``); this package is kept light because discovery imports it.
"""
