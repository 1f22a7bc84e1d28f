"""SageMaker tuning runs: hyperparameter tuning jobs, or a search inside one training job."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sm_imgclf._params import bad_value
from sm_imgclf.backends import one_job
from sm_imgclf.backends.sagemaker import tuning as sagemaker_tuning
from sm_imgclf.backends.sagemaker.capacity import check_fits, largest_image_size, reader
from sm_imgclf.backends.sagemaker.clients import SageMakerClients
from sm_imgclf.backends.sagemaker.errors import translate_errors
from sm_imgclf.backends.sagemaker.jobs import TrainingJobs
from sm_imgclf.backends.sagemaker.training import features_uri, stream_channels
from sm_imgclf.contracts.costs import tuning_runtime_cap
from sm_imgclf.contracts.search import FEATURES_CHANNEL
from sm_imgclf.contracts.status import JobState, TrialRecord, TuningStatus
from sm_imgclf.contracts.tuning import Search, TuningSpec
from sm_imgclf.errors import BackendError, ConfigurationError


class TuningRuns:
    """Tuning runs on SageMaker; a search in one job is driven through ``jobs``."""

    def __init__(self, aws: SageMakerClients, jobs: TrainingJobs) -> None:
        self.aws = aws
        self.jobs = jobs
        self._ended_logs: dict[str, list[str]] = {}  # completed one-job searches' logs
        self._searches: dict[str, Search | None] = {}  # per run: its search if it is one job
        self._tuning_configs: dict[str, dict[str, Any]] = {}  # never change once created
        self._checkpoints: dict[str, str | None] = {}  # per run: its trials' shared prefix
        self._released: set[str] = set()  # ended trials whose checkpoints are gone

    def _ended_log(self, name: str) -> list[str]:
        if name not in self._ended_logs:
            self._ended_logs[name] = self.jobs.whole_log(name)
        return self._ended_logs[name]

    def tuning_request(self, spec: TuningSpec) -> dict[str, Any]:
        """The validated ``CreateHyperParameterTuningJob`` request (nothing is sent).

        A search in one job is one ``CreateTrainingJob`` request instead.
        """
        if spec.in_one_job:
            return self.jobs.training_request(spec.one_job_training())
        training, uploads = self.jobs.artifacts(spec.training)
        return self._tuning_request(replace(spec, training=training), next(iter(uploads)))

    def _tuning_request(self, spec: TuningSpec, source_key: str) -> dict[str, Any]:
        trial = spec.trial_training()
        if spec.shared_features:  # what the features job stored, as a read-only channel
            trial = replace(
                trial,
                channels=(
                    *trial.channels,
                    (FEATURES_CHANNEL, features_uri(self.aws.bucket, spec.features_job_name)),
                ),
            )
        request = sagemaker_tuning.tuning_request(spec, self.jobs.request(trial, source_key))
        if spec.max_cost is not None:
            seconds, _ = tuning_runtime_cap(
                spec, self.aws.prices.price(trial.instance_type, "training")
            )
            if seconds is not None and seconds < 120:
                raise bad_value(
                    "max_cost",
                    "enough for two minutes of the run (SageMaker's shortest limit)",
                    spec.max_cost,
                    f"It buys {seconds} s of {spec.max_parallel_jobs} trial(s) at once.",
                )
            if seconds is not None:
                request["HyperParameterTuningJobConfig"]["ResourceLimits"][
                    "MaxRuntimeInSeconds"
                ] = seconds
        return self.aws.checked("CreateHyperParameterTuningJob", request)

    def start_tuning(self, spec: TuningSpec) -> None:
        """Upload the source tarball (and weights) if needed, then create the tuning job."""
        if spec.in_one_job:
            training = spec.one_job_training()
            self.jobs.start_training(training)
            self._searches[spec.name] = spec.in_job_search()
            return
        training, uploads = self.jobs.artifacts(spec.training)
        spec = replace(spec, training=training)
        request = self._tuning_request(spec, next(iter(uploads)))
        training = spec.trial_training()
        if not spec.shared_features:  # trials on shared features decode no image
            sharded = check_fits(
                training, reader(self.aws.s3_client), image_size=largest_image_size(spec)
            )
            if sharded:
                stream_channels(request["TrainingJobDefinition"]["InputDataConfig"], sharded)
                request = self.aws.checked("CreateHyperParameterTuningJob", request)
        self.aws.check_quota(
            training.instance_type,
            "spot training job usage" if training.use_spot else "training job usage",
            training.instance_count * spec.max_parallel_jobs,
        )
        self._check_parents(request)
        self.jobs.upload(uploads)
        with translate_errors("CreateHyperParameterTuningJob", spec.name):
            self.aws.sagemaker_client.create_hyper_parameter_tuning_job(**request)
        self._searches[spec.name] = None

    def _check_parents(self, request: dict[str, Any]) -> None:
        """Refuse a warm start its parents would make SageMaker refuse, before any upload."""
        warm = request.get("WarmStartConfig", {}).get("ParentHyperParameterTuningJobs", [])
        parents = {}
        for parent in warm:
            name = parent["HyperParameterTuningJobName"]
            with translate_errors("DescribeHyperParameterTuningJob", name):
                parents[name] = self.aws.sagemaker_client.describe_hyper_parameter_tuning_job(
                    HyperParameterTuningJobName=name
                )
        problems = sagemaker_tuning.warm_start_problems(request, parents)
        if problems:
            raise ConfigurationError("\n".join(problems))

    def _one_job_search(self, name: str) -> Search | None:
        """The search of run ``name`` if it is one training job; asked of SageMaker once."""
        if name not in self._searches:
            self._probe(name)
        return self._searches[name]

    def _probe(self, name: str) -> dict[str, Any] | None:
        """Tell a tuning job from a search in one job; return the tuning job's description."""
        try:
            answer = self._describe_tuning(name)
        except BackendError as missing:
            argument = self._job_search_argument(name)
            if argument is None:
                raise missing from None
            self._searches[name] = one_job.search_of(argument)
            return None
        self._searches[name] = None
        return answer

    def _job_search_argument(self, name: str) -> str | None:
        try:
            with translate_errors("DescribeTrainingJob", name):
                answer = self.aws.sagemaker_client.describe_training_job(TrainingJobName=name)
        except BackendError:
            return None
        found: str | None = answer.get("HyperParameters", {}).get("search") or None
        return found

    def _describe_tuning(self, name: str) -> dict[str, Any]:
        with translate_errors("DescribeHyperParameterTuningJob", name):
            answer: dict[str, Any] = self.aws.sagemaker_client.describe_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=name
            )
        # A run's configuration never changes: list_trials reads it from here.
        self._tuning_configs[name] = answer["HyperParameterTuningJobConfig"]
        checkpoints = answer.get("TrainingJobDefinition", {}).get("CheckpointConfig", {})
        self._checkpoints[name] = checkpoints.get("S3Uri")
        return answer

    def describe_tuning(self, name: str) -> TuningStatus:
        """Map ``DescribeHyperParameterTuningJob`` onto :class:`TuningStatus`.

        A run that is one training job (no tuning job of that name) maps that job.
        """
        answer = self._probe(name) if name not in self._searches else None
        search = self._searches[name]
        if search is not None:
            return one_job.tuning_status(
                name, self.jobs.describe_training(name), search, lambda: self._ended_log(name)
            )
        answer = answer or self._describe_tuning(name)
        config = answer["HyperParameterTuningJobConfig"]
        objective = config["HyperParameterTuningJobObjective"]
        categories = config.get("ParameterRanges", {}).get("CategoricalParameterRanges", [])
        return TuningStatus(
            JobState(answer["HyperParameterTuningJobStatus"]),
            answer.get("FailureReason"),
            answer.get("BestTrainingJob", {}).get("TrainingJobName"),
            objective["MetricName"],
            "maximize" if objective["Type"] == "Maximize" else "minimize",
            tuple(r["Name"] for r in categories),
            sagemaker_tuning.stop_reason(answer),
            sagemaker_tuning.ranking(config, objective["MetricName"]),
        )

    def list_trials(self, name: str) -> list[TrialRecord]:
        """Every trial, through ``ListTrainingJobsForHyperParameterTuningJob``'s pages.

        The trials of a run that is one job come from that job's log.
        """
        if self._one_job_search(name) is not None:
            return one_job.trials(name, self.jobs.whole_log(name))
        config = (
            self._tuning_configs.get(name)
            or self._describe_tuning(name)["HyperParameterTuningJobConfig"]
        )
        early = sagemaker_tuning.stops_early(config)
        summaries: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {
                "HyperParameterTuningJobName": name,
                "MaxResults": 100,
                "SortBy": "CreationTime",
                "SortOrder": "Ascending",
            }
            if token:
                args["NextToken"] = token
            with translate_errors("ListTrainingJobsForHyperParameterTuningJob", name):
                page = self.aws.sagemaker_client.list_training_jobs_for_hyper_parameter_tuning_job(
                    **args
                )
            summaries += page["TrainingJobSummaries"]
            token = page.get("NextToken")
            if not token:
                break
        records = [sagemaker_tuning.trial_record(s, early) for s in summaries]
        self._release_checkpoints(name, [r.job_name for r in records if r.status.terminal])
        full = config.get("StrategyConfig", {}).get("HyperbandStrategyConfig", {})
        objective = config["HyperParameterTuningJobObjective"]["MetricName"]
        return [
            sagemaker_tuning.settled(
                r, self.jobs.final_metrics(r.job_name), objective, full.get("MaxResource")
            )
            if r.status.terminal
            else r
            for r in records
        ]

    def _release_checkpoints(self, name: str, ended: list[str]) -> None:
        """Delete the checkpoints that ended trials left under the run's shared prefix.

        SageMaker copies that whole prefix into every trial as it starts; an ended
        trial never resumes, so its files would only fill the later trials' volumes.
        The folder is the trial's name whether or not SageMaker adds it to the prefix.
        """
        if name not in self._checkpoints:
            self._describe_tuning(name)
        shared = self._checkpoints[name]
        if not shared:
            return
        prefix = shared.removeprefix("s3://").partition("/")[2].rstrip("/")
        for trial in ended:
            if trial not in self._released:
                self.aws.store.delete_prefix(f"{prefix}/{trial}/")
                self._released.add(trial)

    def stop_tuning(self, name: str) -> None:
        """Call ``StopHyperParameterTuningJob``; SageMaker stops its running trials.

        A run that already ended is left alone (the service refuses to stop it).
        """
        if self._searches.get(name) is not None:
            self.jobs.stop_training(name)
            return
        try:
            with translate_errors("StopHyperParameterTuningJob", name):
                self.aws.sagemaker_client.stop_hyper_parameter_tuning_job(
                    HyperParameterTuningJobName=name
                )
        except BackendError:
            if self._one_job_search(name) is not None:
                self.jobs.stop_training(name)
            elif not self.describe_tuning(name).status.terminal:
                raise
