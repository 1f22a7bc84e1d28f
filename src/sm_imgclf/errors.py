"""The exceptions sm-imgclf raises.

Every error the library raises on purpose derives from :class:`SmImgclfError`,
so ``except sm_imgclf.SmImgclfError`` catches them all. The tree::

    SmImgclfError
    ├── ConfigurationError (also ValueError)    a bad parameter or setting
    │   └── MissingDependencyError (also ImportError)   an optional extra is not installed
    ├── DebugDataNotFoundError (also FileNotFoundError)  a job without recorded checks data
    ├── DatasetError                            the images on disk
    │   ├── DatasetNotFoundError                a missing root, no class folders
    │   └── DatasetValidationError              validation found errors; carries the report
    ├── StorageError                            moving data to and from a store
    │   ├── BucketNotFoundError                 the bucket does not exist
    │   ├── StorageAccessDeniedError            credentials or policy refuse the call
    │   ├── ObjectNotFoundError                 a key that is not in the store
    │   └── TransferError                       some files failed to transfer; carries the summary
    └── BackendError                            a backend could not do what it was asked
        ├── TrainingJobFailedError              a training job ended in Failed; carries the reason
        ├── TuningFailedError                   a tuning run ended in Failed; carries the reason
        └── EndpointError                       an endpoint refused a request; carries the status

Each message names the thing at fault, what was expected and what to do.
"""

from __future__ import annotations

from typing import Any

# The report and the summary are typed Any here: this module sits below every
# other one, so it cannot import their classes without a circle.

__all__ = [
    "BackendError",
    "BucketNotFoundError",
    "ConfigurationError",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetValidationError",
    "DebugDataNotFoundError",
    "EndpointError",
    "MissingDependencyError",
    "ObjectNotFoundError",
    "SmImgclfError",
    "StorageAccessDeniedError",
    "StorageError",
    "TrainingJobFailedError",
    "TransferError",
    "TuningFailedError",
]


class SmImgclfError(Exception):
    """The root of every error sm-imgclf raises on purpose."""


class ConfigurationError(SmImgclfError, ValueError):
    """A parameter or setting has a value the library cannot use."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional dependency is needed for this feature but is not installed.

    Attributes:
        extra: The name of the ``pip install "sm-imgclf[extra]"`` extra that provides it.
    """

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class DebugDataNotFoundError(SmImgclfError, FileNotFoundError):
    """A job, folder or archive holds no data recorded for the checks and profiler."""


class DatasetError(SmImgclfError):
    """Something is wrong with the images or their folder layout."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset root is missing or holds no class folders."""


class DatasetValidationError(DatasetError):
    """Validation found errors that would break or mislead training.

    Attributes:
        report: The full :class:`~sm_imgclf.ValidationReport`.
    """

    def __init__(self, message: str, *, report: Any) -> None:
        super().__init__(message)
        self.report = report


class StorageError(SmImgclfError):
    """A store (a local directory or an S3 bucket) refused or failed an operation."""


class BucketNotFoundError(StorageError):
    """The bucket named in the session does not exist."""


class StorageAccessDeniedError(StorageError, PermissionError):
    """The credentials in use may not perform this operation on the bucket."""


class ObjectNotFoundError(StorageError, KeyError):
    """No object is stored under the requested key."""

    def __str__(self) -> str:
        # KeyError quotes its argument; this message is prose.
        return str(self.args[0]) if self.args else ""


class TransferError(StorageError):
    """Some files could not be transferred; the others were.

    Attributes:
        summary: The :class:`~sm_imgclf.TransferSummary`, listing every failed file.
    """

    def __init__(self, message: str, *, summary: Any) -> None:
        super().__init__(message)
        self.summary = summary


class BackendError(SmImgclfError):
    """A backend could not carry out a request."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.context = context


class TrainingJobFailedError(BackendError):
    """A training job ended in ``Failed``.

    Attributes:
        reason: The job's failure reason (the end of its traceback).
    """

    def __init__(self, name: str, reason: str | None) -> None:
        super().__init__(f"Training job {name!r} failed: {reason or 'no reason given'}", name=name)
        self.reason = reason


class TuningFailedError(BackendError):
    """A tuning run ended in ``Failed`` (every trial failed, or no objective was printed).

    Attributes:
        reason: The collected reasons.
    """

    def __init__(self, name: str, reason: str | None) -> None:
        super().__init__(f"Tuning run {name!r} failed: {reason or 'no reason given'}", name=name)
        self.reason = reason


class EndpointError(BackendError):
    """An endpoint refused a request or could not be reached.

    Attributes:
        status: The HTTP status it answered with (0 when it did not answer).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, status=status)
        self.status = status
