"""Modules imported on first use: PyAV (containers) costs about 0.2 s to import and is needed
only when a file that soundfile / PIL cannot read is opened, so ``mmtok`` and its trainers start
(and run on machines without PyAV, reading only WAV/FLAC/Ogg and images) without it."""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule(ModuleType):
    """Stands in for module ``name``; the first attribute access imports it.

    A missing package raises ImportError at that first use, naming the package.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> object:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self._module is None:
            self._module = importlib.import_module(self.__name__)
        return getattr(self._module, attr)
