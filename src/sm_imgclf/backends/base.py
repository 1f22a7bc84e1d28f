"""The Backend protocol every backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sm_imgclf.storage.base import Store


@runtime_checkable
class Backend(Protocol):
    """Where a session's work is stored and executed.

    This release covers storage; training, tuning and serving join the
    protocol as they are built, each as one method taking a frozen spec.

    Attributes:
        name: A short name for messages and logs (``"local"``, ``"sagemaker"``, ``"fake"``).
    """

    name: str

    @property
    def store(self) -> Store:
        """The store that holds datasets, job outputs and model packages."""
        ...
