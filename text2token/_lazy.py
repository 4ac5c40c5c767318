"""Lazy exports for sub-packages whose imports are heavy (mteb, matplotlib), so `text2token --help` stays fast."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package``: name -> the sub-module defining it."""
    names = sorted(exports)

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = import_module(f".{exports[name]}", package)
        value = getattr(module, name)
        setattr(import_module(package), name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(import_module(package)), *names})

    return names, __getattr__, __dir__
