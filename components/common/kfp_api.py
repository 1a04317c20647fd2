"""A connection to the Kubeflow Pipelines API (``kfp.Client``) whose every failure is one line naming the host.

Shared by ``kubetfx submit``/``schedule`` (pipelines/cluster/submit.py) and the monitor pipeline's
RetrainTrigger, which starts runs from inside the cluster with its ServiceAccount's projected token.
"""

import contextlib
import dataclasses
import json
import os
import urllib.error
import urllib.request
import warnings

from kubetfx.components.common.errors import ConfigError, KubetfxError

HEALTHZ = "/apis/v2beta1/healthz"
TOKEN_SOURCES = ("none", "env", "file", "cookie")


class KfpApiError(KubetfxError):
    """Kubeflow Pipelines could not be reached or refused a call."""


@dataclasses.dataclass
class KfpEndpoint:
    """Where the API is and who calls it. ``token``: none | env:VAR (bearer) | file:PATH (projected SA token) | cookie:VAR."""

    host: str
    namespace: str = ""  # a Kubeflow profile namespace on multi-user installs
    experiment: str = "kubetfx"
    service_account: str = ""  # the runs' Kubernetes service account
    token: str = "none"
    ui_url: str = ""  # where run links point; default: host
    where: str = "kfp"  # the config the values came from (messages)


def _api_message(err) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
        return str(parsed.get("message") or parsed.get("error_message") or body).strip()
    except (TypeError, ValueError, AttributeError):
        return str(body or getattr(err, "reason", "") or err).strip()[:300]


class KfpConnection:
    """One endpoint's ``kfp.Client``, connected on first use; errors become :class:`KfpApiError`."""

    def __init__(self, endpoint: KfpEndpoint, client=None):
        self.endpoint = endpoint
        self.where = endpoint.where
        self.host = endpoint.host.rstrip("/")
        self.namespace = endpoint.namespace
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
        source, _, argument = self.endpoint.token.partition(":")
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
            with open(self.endpoint.token.partition(":")[2], encoding="utf-8") as handle:  # what kfp will read
                headers["Authorization"] = f"Bearer {handle.read().strip()}"
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
        with warnings.catch_warnings(), self.calls("connecting to"):
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
            return kfp.Client(host=self.host, namespace=self.namespace, ui_host=self.endpoint.ui_url or None,
                              **credentials)

    @contextlib.contextmanager
    def calls(self, what: str):
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

    def experiment_id(self) -> str:
        with self.calls("creating or finding the experiment on"):
            experiment = self.client.create_experiment(self.endpoint.experiment, namespace=self.namespace or None)
        return experiment.experiment_id

    def run_link(self, run_id: str) -> str:
        """The run's page in the KFP UI (``ui_url``, else the API host, which serves the UI on a Kubeflow install)."""
        return f"{(self.endpoint.ui_url or self.host).rstrip('/')}/#/runs/details/{run_id}"

    def start_latest(self, pipeline_name: str, params: dict, run_name: str) -> str:
        """Start a run of the newest version of an uploaded pipeline (continuous training's trigger)."""
        with self.calls("finding the pipeline on"):
            pipeline_id = self.client.get_pipeline_id(pipeline_name)
            if pipeline_id is None:
                raise KfpApiError(f"no pipeline named {pipeline_name} on {self.host}: upload it first "
                                  "(`make submit` or `make schedule` for its environment)")
            versions = self.client.list_pipeline_versions(pipeline_id, page_size=1,
                                                          sort_by="created_at desc").pipeline_versions
        if not versions:
            raise KfpApiError(f"pipeline {pipeline_name} on {self.host} has no version to run")
        experiment_id = self.experiment_id()
        with self.calls("starting the run on"):
            run = self.client.run_pipeline(experiment_id=experiment_id, job_name=run_name, params=params,
                                           pipeline_id=pipeline_id, version_id=versions[0].pipeline_version_id,
                                           service_account=self.endpoint.service_account or None)
        print(f"Started run {run_name} ({run.run_id}) of {pipeline_name} version "
              f"{versions[0].display_name} in experiment {self.endpoint.experiment}")
        return run.run_id
