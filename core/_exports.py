"""Public names that say where to find them.

A package's public objects live in its private modules (``volta.actors._agent``);
``public_names`` makes their ``__module__`` the package (``volta.actors``), as
trio's ``fixup_module_metadata`` does, so reprs, tracebacks and documentation show
the name a user imports: ``volta.actors.AskFailed: agent 'x' failed: ...``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import attrs


def public_names(package: str, namespace: Mapping[str, Any]) -> None:
    """Give each class and function in ``namespace["__all__"]`` that was defined in a
    private module of ``package`` the package as its ``__module__``.

    An attrs class has its annotations resolved first, while its own module is still
    the one they are written in.
    """
    for name in namespace["__all__"]:
        value = namespace[name]
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not getattr(value, "__module__", "").startswith(f"{package}._"):
            continue
        if inspect.isclass(value) and attrs.has(value):
            attrs.resolve_types(value)
        value.__module__ = package
