"""Output that outlives its reader: the job keeps going to package its model."""

from __future__ import annotations

import os
from typing import Any


class SurvivingStream:
    """A stream whose reader may go away (a toolkit killed by the same SIGTERM).

    Once a write or flush meets ``BrokenPipeError``, later output goes to
    ``os.devnull``: the job goes on without its log instead of dying at its
    next print.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text``, or drop it once the reader is gone."""
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            self._lost()
            return len(text)

    def flush(self) -> None:
        """Flush, or drop what is buffered once the reader is gone."""
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._lost()

    def _lost(self) -> None:
        self._stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the job

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
