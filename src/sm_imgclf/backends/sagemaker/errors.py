"""SageMaker calls' errors, turned into the library's."""

from __future__ import annotations

from sm_imgclf.errors import BackendError


def already_exists(error: BackendError) -> bool:
    """Whether a create call failed because its resource exists already."""
    from botocore.exceptions import ClientError

    cause = error.__cause__
    if not isinstance(cause, ClientError):
        return False
    found = cause.response.get("Error", {})
    return found.get("Code") == "ResourceInUse" or "already exist" in found.get("Message", "")


class translate_errors:
    """Turn botocore errors of a SageMaker call into :class:`~sm_imgclf.BackendError`."""

    def __init__(self, action: str, name: str) -> None:
        self.action, self.name = action, name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, ClientError | BotoCoreError):
            raise BackendError(
                f"{self.action} for {self.name!r} failed: {error}", name=self.name
            ) from error
