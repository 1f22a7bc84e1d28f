"""sm-imgclf: from a folder of labelled images to a tuned, checked, deployed classifier.

Everything runs on this machine by default (:class:`LocalSession`) and the
same code scales out to Amazon SageMaker (:class:`SageMakerSession`).

Importing the package is cheap: the names below are loaded on first use, and
nothing imports torch, boto3 or sagemaker until a feature needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sm_imgclf._version import __version__
from sm_imgclf.errors import (
    BackendError,
    BucketNotFoundError,
    ConfigurationError,
    DatasetError,
    DatasetNotFoundError,
    DatasetValidationError,
    DebugDataNotFoundError,
    EndpointError,
    MissingDependencyError,
    ObjectNotFoundError,
    SmImgclfError,
    StorageAccessDeniedError,
    StorageError,
    TrainingJobFailedError,
    TransferError,
    TuningFailedError,
)

if TYPE_CHECKING:
    from sm_imgclf.backends.fake import FakeBackend
    from sm_imgclf.contracts.costs import CostEstimate, Price
    from sm_imgclf.contracts.deploy import DeployOptions, DeploySpec
    from sm_imgclf.contracts.hyperparameters import Hyperparameters
    from sm_imgclf.contracts.prediction import Prediction
    from sm_imgclf.contracts.resources import Resource
    from sm_imgclf.contracts.space import Categorical, Continuous, Integer
    from sm_imgclf.contracts.status import (
        JobState,
        JobStatus,
        TrialRecord,
        TrialState,
        TuningStatus,
    )
    from sm_imgclf.contracts.storage import TransferSummary
    from sm_imgclf.contracts.training import Compute, TrainingSpec
    from sm_imgclf.contracts.tuning import Strategy, TuningSpec
    from sm_imgclf.data.cifar10 import cifar10_to_folder
    from sm_imgclf.data.dataset import ImageFolderDataset
    from sm_imgclf.data.digits import digits_to_folder
    from sm_imgclf.data.manifest import DatasetManifest, ManifestEntry
    from sm_imgclf.data.report import Finding, Severity, ValidationReport
    from sm_imgclf.data.upload import Channels
    from sm_imgclf.debug.analyzer import DebugProfileAnalyzer
    from sm_imgclf.debug.insights import Insight
    from sm_imgclf.evaluation.evaluate import Evaluation
    from sm_imgclf.evaluation.explain import Explanation, ModelExplainer
    from sm_imgclf.evaluation.scores import ScoredImage, Scores
    from sm_imgclf.runtime.checks.rules import RuleResult
    from sm_imgclf.runtime.models import list_models
    from sm_imgclf.runtime.sources import backbone, register_model
    from sm_imgclf.serving.client import EndpointClient
    from sm_imgclf.session import LocalSession, SageMakerSession, Session
    from sm_imgclf.training.estimator import TransferLearningEstimator
    from sm_imgclf.training.job import TrainingJob
    from sm_imgclf.training.registered import deploy_registered
    from sm_imgclf.training.registry import RegisteredVersion
    from sm_imgclf.tuning.result import TuningResult
    from sm_imgclf.tuning.run import TuningRun
    from sm_imgclf.tuning.trial import Trial

_LAZY = {
    "Channels": "sm_imgclf.data.upload",
    "DatasetManifest": "sm_imgclf.data.manifest",
    "DeployOptions": "sm_imgclf.contracts.deploy",
    "DeploySpec": "sm_imgclf.contracts.deploy",
    "DebugProfileAnalyzer": "sm_imgclf.debug.analyzer",
    "Insight": "sm_imgclf.debug.insights",
    "RuleResult": "sm_imgclf.runtime.checks.rules",
    "EndpointClient": "sm_imgclf.serving.client",
    "Evaluation": "sm_imgclf.evaluation.evaluate",
    "CostEstimate": "sm_imgclf.contracts.costs",
    "Price": "sm_imgclf.contracts.costs",
    "Resource": "sm_imgclf.contracts.resources",
    "ScoredImage": "sm_imgclf.evaluation.scores",
    "Scores": "sm_imgclf.evaluation.scores",
    "Explanation": "sm_imgclf.evaluation.explain",
    "ModelExplainer": "sm_imgclf.evaluation.explain",
    "Prediction": "sm_imgclf.contracts.prediction",
    "FakeBackend": "sm_imgclf.backends.fake",
    "Finding": "sm_imgclf.data.report",
    "ImageFolderDataset": "sm_imgclf.data.dataset",
    "LocalSession": "sm_imgclf.session",
    "ManifestEntry": "sm_imgclf.data.manifest",
    "SageMakerSession": "sm_imgclf.session",
    "Session": "sm_imgclf.session",
    "Severity": "sm_imgclf.data.report",
    "TransferSummary": "sm_imgclf.contracts.storage",
    "TransferLearningEstimator": "sm_imgclf.training.estimator",
    "Hyperparameters": "sm_imgclf.contracts.hyperparameters",
    "Compute": "sm_imgclf.contracts.training",
    "JobStatus": "sm_imgclf.contracts.status",
    "JobState": "sm_imgclf.contracts.status",
    "TrialState": "sm_imgclf.contracts.status",
    "TrainingJob": "sm_imgclf.training.job",
    "RegisteredVersion": "sm_imgclf.training.registry",
    "deploy_registered": "sm_imgclf.training.registered",
    "TrainingSpec": "sm_imgclf.contracts.training",
    "Trial": "sm_imgclf.tuning.trial",
    "TuningResult": "sm_imgclf.tuning.result",
    "TuningRun": "sm_imgclf.tuning.run",
    "Categorical": "sm_imgclf.contracts.space",
    "Continuous": "sm_imgclf.contracts.space",
    "Integer": "sm_imgclf.contracts.space",
    "Strategy": "sm_imgclf.contracts.tuning",
    "TrialRecord": "sm_imgclf.contracts.status",
    "TuningSpec": "sm_imgclf.contracts.tuning",
    "TuningStatus": "sm_imgclf.contracts.status",
    "ValidationReport": "sm_imgclf.data.report",
    "cifar10_to_folder": "sm_imgclf.data.cifar10",
    "digits_to_folder": "sm_imgclf.data.digits",
    "backbone": "sm_imgclf.runtime.sources",
    "list_models": "sm_imgclf.runtime.models",
    "register_model": "sm_imgclf.runtime.sources",
}

__all__ = [
    "BackendError",
    "BucketNotFoundError",
    "Categorical",
    "Channels",
    "Compute",
    "ConfigurationError",
    "Continuous",
    "CostEstimate",
    "DatasetError",
    "DatasetManifest",
    "DatasetNotFoundError",
    "DatasetValidationError",
    "DebugDataNotFoundError",
    "DebugProfileAnalyzer",
    "DeployOptions",
    "DeploySpec",
    "EndpointClient",
    "EndpointError",
    "Evaluation",
    "Explanation",
    "FakeBackend",
    "Finding",
    "Hyperparameters",
    "ImageFolderDataset",
    "Insight",
    "Integer",
    "JobState",
    "JobStatus",
    "LocalSession",
    "ManifestEntry",
    "MissingDependencyError",
    "ModelExplainer",
    "ObjectNotFoundError",
    "Prediction",
    "Price",
    "RegisteredVersion",
    "Resource",
    "RuleResult",
    "SageMakerSession",
    "ScoredImage",
    "Scores",
    "Session",
    "Severity",
    "SmImgclfError",
    "StorageAccessDeniedError",
    "StorageError",
    "Strategy",
    "TrainingJob",
    "TrainingJobFailedError",
    "TrainingSpec",
    "TransferError",
    "TransferLearningEstimator",
    "TransferSummary",
    "Trial",
    "TrialRecord",
    "TrialState",
    "TuningFailedError",
    "TuningResult",
    "TuningRun",
    "TuningSpec",
    "TuningStatus",
    "ValidationReport",
    "__version__",
    "backbone",
    "cifar10_to_folder",
    "deploy_registered",
    "digits_to_folder",
    "list_models",
    "register_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sm_imgclf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
