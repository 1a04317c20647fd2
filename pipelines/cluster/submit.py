"""Submit and schedule compiled pipelines on Kubeflow Pipelines, with the KFP SDK's ``kfp.Client``.

``submit``: upload the pipeline and a version named by the compiled YAML's content hash
(re-submitting the same YAML reuses that version; a changed one adds one), create or reuse
the environment's experiment, start a run, print its UI URL. ``schedule``: the same
upload, then a recurring run (cron) that replaces — never duplicates — the one of the
same name. Every failure is one line naming the host and what to fix (exit code 2).
"""

import hashlib
import json
import time

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.common.kfp_api import KfpApiError, KfpConnection, KfpEndpoint
from kubetfx.pipelines.cluster.compiled import Compiled
from kubetfx.pipelines.config import PipelineConfig

PAGE_SIZE = 100
__all__ = ["KfpApiError", "KfpSubmitter"]


def _display_name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


class KfpSubmitter(KfpConnection):
    """One environment's connection to Kubeflow Pipelines: upload, submit, schedule."""

    def __init__(self, config: PipelineConfig, client=None):
        where = config.source or config.name
        host = config.kfp.resolved_host()
        if not host:
            raise ConfigError(f"no Kubeflow Pipelines endpoint for environment '{config.name}': set kfp.host in "
                              f"{where} or KFP_HOST (e.g. http://localhost:8080 after `kubectl port-forward "
                              "-n kubeflow svc/ml-pipeline-ui 8080:80`)")
        super().__init__(KfpEndpoint(host=host, namespace=config.kfp.resolved_namespace(),
                                     experiment=config.kfp.experiment, service_account=config.kfp.service_account,
                                     token=config.kfp.token, ui_url=config.kfp.ui_url, where=where), client)
        self.config = config

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
        with self.calls("uploading the pipeline to"):
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

    # ------------------------------------------------------------------ the commands

    def submit(self, compiled: Compiled, params: dict, run_name: str | None = None) -> str:
        """Start one run; return its id."""
        arguments = self._arguments(compiled, params)
        pipeline_id, version_id = self._upload(compiled)
        experiment_id = self.experiment_id()
        run_name = run_name or f"{compiled.pipeline_name}-{self.config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        with self.calls("starting the run on"):
            run = self.client.run_pipeline(experiment_id=experiment_id, job_name=run_name, params=arguments,
                                           pipeline_id=pipeline_id, version_id=version_id,
                                           service_account=self.config.kfp.service_account or None)
        print(f"Started run {run_name} ({run.run_id}) in experiment {self.config.kfp.experiment}")
        print(f"  {self.run_link(run.run_id)}")
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
        experiment_id = self.experiment_id()
        name = settings.name or f"{compiled.pipeline_name}-{self.config.name}"
        with self.calls("scheduling the recurring run on"):
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
