"""Submit and schedule compiled pipelines on Kubeflow Pipelines, with the KFP SDK's ``kfp.Client``.

``submit``: upload the pipeline and a version named by the compiled YAML's content hash
(re-submitting the same YAML reuses that version; a changed one adds one), create or reuse
the environment's experiment, start a run, print its UI URL. ``schedule``: the same
upload, then a recurring run (cron) that replaces — never duplicates — the one of the
same name. Every failure is one line naming the host and what to fix (exit code 2).
"""

import contextlib
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
import warnings

from kubetfx.components.common.errors import ConfigError, KubetfxError
from kubetfx.pipelines.compiler import Compiled
from kubetfx.pipelines.config import PipelineConfig

HEALTHZ = "/apis/v2beta1/healthz"
PAGE_SIZE = 100


class KfpApiError(KubetfxError):
    """Kubeflow Pipelines could not be reached or refused a call."""


def _display_name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _api_message(err) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
        return str(parsed.get("message") or parsed.get("error_message") or body).strip()
    except (TypeError, ValueError, AttributeError):
        return str(body or getattr(err, "reason", "") or err).strip()[:300]


class KfpSubmitter:
    """One environment's connection to Kubeflow Pipelines."""

    def __init__(self, config: PipelineConfig, client=None):
        self.config = config
        self.where = config.source or config.name
        self.host = config.kfp.resolved_host()
        if not self.host:
            raise ConfigError(f"no Kubeflow Pipelines endpoint for environment '{config.name}': set kfp.host in "
                              f"{self.where} or KFP_HOST (e.g. http://localhost:8080 after `kubectl port-forward "
                              "-n kubeflow svc/ml-pipeline-ui 8080:80`)")
        self.namespace = config.kfp.resolved_namespace()
        self._client = client

    @property
    def client(self):
        """kfp.Client, connected on first use (after everything that can be checked offline)."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    # ------------------------------------------------------------------ connection

    def _credentials(self) -> dict:
        """kfp.Client keyword arguments for the environment's token source."""
        source, _, argument = self.config.kfp.token.partition(":")
        if source == "none":
            return {}
        if source == "file":
            if not os.path.isfile(argument):
                raise ConfigError(f"{self.where}: kfp.token file {argument} does not exist")
            from kfp.client import ServiceAccountTokenVolumeCredentials

            return {"credentials": ServiceAccountTokenVolumeCredentials(path=argument)}
        value = os.environ.get(argument, "")
        if not value:
            raise ConfigError(f"{self.where}: kfp.token is {source}:{argument} but ${argument} is empty or unset")
        return {"existing_token": value} if source == "env" else {"cookies": value}

    def _preflight(self, credentials: dict) -> None:
        """One quick request before kfp.Client, which retries a failing healthz for 25 s with log noise."""
        headers = {}
        if "existing_token" in credentials:
            headers["Authorization"] = f"Bearer {credentials['existing_token']}"
        if "cookies" in credentials:
            headers["Cookie"] = credentials["cookies"]
        if "credentials" in credentials:
            headers["Authorization"] = f"Bearer {credentials['credentials'].get_token()}"
        request = urllib.request.Request(self.host + HEALTHZ, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=15):
                return
        except urllib.error.HTTPError as err:
            hint = {401: "check kfp.token", 403: "check kfp.token and your access to the namespace",
                    404: "is kfp.host the Kubeflow Pipelines API (…/pipeline on a Kubeflow install)?"}
            raise KfpApiError(f"Kubeflow Pipelines at {self.host} answered HTTP {err.code} to {HEALTHZ}"
                              + (f" ({hint[err.code]})" if err.code in hint else "")) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise KfpApiError(f"cannot reach Kubeflow Pipelines at {self.host}: {reason} (is the cluster up and "
                              f"kfp.host/KFP_HOST right?)") from None

    def _connect(self):
        import kfp

        credentials = self._credentials()
        self._preflight(credentials)
        with warnings.catch_warnings(), self._api("connecting to"):
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
            return kfp.Client(host=self.host, namespace=self.namespace, ui_host=self.config.kfp.ui_url or None,
                              **credentials)

    @contextlib.contextmanager
    def _api(self, what: str):
        """Turn kfp_server_api / urllib3 errors into one line."""
        import kfp_server_api
        import urllib3

        try:
            yield
        except kfp_server_api.ApiException as err:
            raise KfpApiError(f"{what} Kubeflow Pipelines at {self.host} failed: HTTP {err.status} "
                              f"{_api_message(err)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise KfpApiError(f"{what} Kubeflow Pipelines at {self.host} failed: {err}") from None

    # ------------------------------------------------------------------ what both commands do

    def _arguments(self, compiled: Compiled, params: dict) -> dict:
        """The run's parameters (only those given; the rest are baked in), checked like a local run's."""
        from kubetfx.pipelines import preflight

        arguments = preflight.coerce_arguments(compiled.inputs, params, "--param")
        try:
            preflight.check(compiled.inputs, {**compiled.defaults, **arguments}, "--param")
        except ConfigError as err:
            missing = [name for name in compiled.required if name not in params]
            if missing:
                raise ConfigError(f"no value for {', '.join(missing)}: set parameters.{missing[0]} in {self.where} "
                                  f"or pass --param {missing[0]}=...") from None
            raise err from None
        return arguments

    def _upload(self, compiled: Compiled) -> tuple[str, str]:
        """(pipeline id, version id) of this compiled YAML: the version named by its content hash, uploaded once."""
        with open(compiled.path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()[:12]
        name = compiled.pipeline_name
        version_name = f"{name}-{digest}"
        with self._api("uploading the pipeline to"):
            pipeline_id = self.client.get_pipeline_id(name)
            if pipeline_id is None:  # the server gives a new pipeline a first version named like the pipeline
                pipeline_id = self.client.upload_pipeline(compiled.path, pipeline_name=name,
                                                          description=f"{name} (kubetfx)").pipeline_id
                print(f"Uploaded pipeline {name} ({pipeline_id})")
            existing = self.client.list_pipeline_versions(pipeline_id, page_size=1,
                                                          filter=_display_name_filter(version_name))
            if existing.pipeline_versions:
                print(f"Pipeline {name}: version {version_name} is already uploaded")
                return pipeline_id, existing.pipeline_versions[0].pipeline_version_id
            version = self.client.upload_pipeline_version(compiled.path, pipeline_version_name=version_name,
                                                          pipeline_id=pipeline_id)
            print(f"Uploaded pipeline {name}, version {version_name}")
            return pipeline_id, version.pipeline_version_id

    def _experiment_id(self) -> str:
        with self._api("creating or finding the experiment on"):
            experiment = self.client.create_experiment(self.config.kfp.experiment, namespace=self.namespace or None)
        return experiment.experiment_id

    # ------------------------------------------------------------------ the commands

    def submit(self, compiled: Compiled, params: dict, run_name: str | None = None) -> str:
        """Start one run; return its id."""
        arguments = self._arguments(compiled, params)
        pipeline_id, version_id = self._upload(compiled)
        experiment_id = self._experiment_id()
        run_name = run_name or f"{compiled.pipeline_name}-{self.config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        with self._api("starting the run on"):
            run = self.client.run_pipeline(experiment_id=experiment_id, job_name=run_name, params=arguments,
                                           pipeline_id=pipeline_id, version_id=version_id,
                                           service_account=self.config.kfp.service_account or None)
        ui = (self.config.kfp.ui_url or self.host).rstrip("/")
        print(f"Started run {run_name} ({run.run_id}) in experiment {self.config.kfp.experiment}")
        print(f"  {ui}/#/runs/details/{run.run_id}")
        return run.run_id

    def start_latest(self, pipeline_name: str, params: dict, run_name: str) -> str:
        """Start a run of the newest version of an uploaded pipeline (continuous training's trigger)."""
        with self._api("finding the pipeline on"):
            pipeline_id = self.client.get_pipeline_id(pipeline_name)
            if pipeline_id is None:
                raise KfpApiError(f"no pipeline named {pipeline_name} on {self.host}: upload it first "
                                  "(`make submit` or `make schedule` for its environment)")
            versions = self.client.list_pipeline_versions(pipeline_id, page_size=1,
                                                          sort_by="created_at desc").pipeline_versions
        if not versions:
            raise KfpApiError(f"pipeline {pipeline_name} on {self.host} has no version to run")
        experiment_id = self._experiment_id()
        with self._api("starting the run on"):
            run = self.client.run_pipeline(experiment_id=experiment_id, job_name=run_name, params=params,
                                           pipeline_id=pipeline_id, version_id=versions[0].pipeline_version_id,
                                           service_account=self.config.kfp.service_account or None)
        print(f"Started run {run_name} ({run.run_id}) of {pipeline_name} version "
              f"{versions[0].display_name} in experiment {self.config.kfp.experiment}")
        return run.run_id

    def _recurring_runs_named(self, experiment_id: str, name: str) -> list:
        found, token = [], ""
        while True:
            page = self.client.list_recurring_runs(experiment_id=experiment_id, page_token=token,
                                                   page_size=PAGE_SIZE, filter=_display_name_filter(name))
            found += [r for r in page.recurring_runs or [] if r.display_name == name]
            token = page.next_page_token
            if not token:
                return found

    def schedule(self, compiled: Compiled, params: dict, cron: str | None = None) -> str:
        """Create the recurring run, then delete any older one of the same name; return the new id."""
        settings = self.config.kfp.schedule
        cron = cron or settings.cron
        if len(cron.split()) != 6:
            raise ConfigError(f"cron '{cron}' must have six fields (second minute hour day month weekday)")
        arguments = self._arguments(compiled, params)
        pipeline_id, version_id = self._upload(compiled)
        experiment_id = self._experiment_id()
        name = settings.name or f"{compiled.pipeline_name}-{self.config.name}"
        with self._api("scheduling the recurring run on"):
            older = self._recurring_runs_named(experiment_id, name)
            created = self.client.create_recurring_run(
                experiment_id=experiment_id, job_name=name, description=f"kubetfx continuous training ({cron})",
                cron_expression=cron, max_concurrency=settings.max_concurrency, params=arguments,
                pipeline_id=pipeline_id, version_id=version_id, enabled=settings.enabled,
                service_account=self.config.kfp.service_account or None)
            for recurring_run in older:
                self.client.delete_recurring_run(recurring_run.recurring_run_id)
        replaced = f", replacing {', '.join(r.recurring_run_id for r in older)}" if older else ""
        print(f"Scheduled {name} ({created.recurring_run_id}): cron '{cron}' in experiment "
              f"{self.config.kfp.experiment}{replaced}")
        return created.recurring_run_id
