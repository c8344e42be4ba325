"""The version of the sdk-core distribution and of the hook API plugins are written against.

``__version__`` is the single source of the distribution's version (pyproject.toml reads it).
``API_VERSION`` changes only when a hook or a record changes incompatibly; every plugin
declares the API it was written for (``SDK_CORE_API``) and a mismatch is refused.
"""

__version__ = "0.2.0"
API_VERSION = 1

# hook API -> the sdk-core releases that provide it (see docs/stability.md)
PROVIDED_BY = {1: ">=0.2,<1"}


def requirement(api: int = API_VERSION) -> str:
    """The ``sdk-core`` requirement a plugin written for hook API ``api`` declares."""
    return f"sdk-core{PROVIDED_BY[api]}"
