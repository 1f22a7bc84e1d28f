"""MLflow tracking's names: the variables that tell a job where to log, and URI checks."""

from __future__ import annotations

from sm_imgclf._params import bad_value

URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
RUN_NAME_ENV = "SM_IMGCLF_RUN_NAME"
PARENT_ENV = "SM_IMGCLF_PARENT_RUN"
DEFAULT_EXPERIMENT = "sm-imgclf"
REMOTE_SCHEMES = ("http://", "https://", "arn:")


def check_tracking_uri(uri: object) -> str | None:
    """``uri`` if it is ``None`` or a non-empty string, else a clear error."""
    if uri is None or (isinstance(uri, str) and uri.strip()):
        return uri
    raise bad_value("tracking_uri", "an MLflow tracking URI such as 'http://127.0.0.1:5000'", uri)


def tracking_requirements(environment: dict[str, str]) -> tuple[str, ...]:
    """What a SageMaker job installs to log where ``environment`` says.

    AWS's current PyTorch training images carry MLflow (older ones do not, and
    pip leaves an installed one alone); a managed tracking server's ARN needs
    AWS's ``sagemaker-mlflow`` plugin to sign its requests.
    """
    uri = environment.get(URI_ENV)
    if not uri:
        return ()
    return ("mlflow>=3.1,<4", *(("sagemaker-mlflow",) if uri.startswith("arn:") else ()))
