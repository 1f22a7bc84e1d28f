"""Deploying a registered model version by name: its job, as ``job.deploy()`` would."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sm_imgclf.training.job import TrainingJob
from sm_imgclf.training.registry import ENDPOINT_TAG, registered_version

if TYPE_CHECKING:
    from sm_imgclf.contracts.deploy import DeployOptions
    from sm_imgclf.serving.client import EndpointClient
    from sm_imgclf.session import Session


def deploy_registered(
    session: Session,
    reference: str,
    endpoint: str | None = None,
    *,
    options: DeployOptions | None = None,
    delete_after: str | None = None,
) -> EndpointClient:
    """Deploy a registered version (``"name:version"``, or ``"name"`` for the newest).

    It deploys the version's job, exactly as ``job.deploy()`` would; the
    endpoint is tagged ``registered-model=name:version``.

    Args:
        session: The session the version's job ran on, tracking to its registry.
        reference: ``"name:version"``, or ``"name"`` for its newest version.
        endpoint: The endpoint's name (default: the job's).
        options: How it serves (see :class:`~sm_imgclf.DeployOptions`).
        delete_after: Delete the endpoint this long after it is created.

    Returns:
        A client that deletes the endpoint when used as a context manager.

    Raises:
        ConfigurationError: The session does not track, or has no such version.
    """
    from sm_imgclf.contracts.deploy import DeployOptions

    version = registered_version(session, reference)
    chosen = options if options is not None else DeployOptions()
    chosen = replace(chosen, tags=(*chosen.tags, (ENDPOINT_TAG, str(version))))
    job = TrainingJob.attach(version.job_name, session)
    return job.deploy(endpoint, options=chosen, delete_after=delete_after)
