"""Environment config: what differs between the embedded default, a dev cluster and prod.

One YAML file per environment (``pipelines/configs/<env>.yaml``, chosen with
``--env <env>`` or ``--config FILE``). Every field has a default that works
locally; compiling for an environment bakes its values into the pipeline
(Kubernetes settings, parameter defaults, the Pusher's KServe shape), and
``kubetfx submit``/``schedule`` read the KFP connection from it. Validation
errors name the file and the field.
"""

import dataclasses
import os

import yaml

from kubetfx.components.common import kubernetes_values
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.common.kfp_api import TOKEN_SOURCES

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


@dataclasses.dataclass
class Resources:
    """CPU/memory requests and limits of one task (Kubernetes quantities, e.g. "500m", "2Gi")."""

    cpu_request: str = ""
    cpu_limit: str = ""
    memory_request: str = ""
    memory_limit: str = ""


@dataclasses.dataclass
class Toleration:
    key: str = "nvidia.com/gpu"
    operator: str = "Exists"
    value: str = ""
    effect: str = "NoSchedule"


@dataclasses.dataclass
class GpuPool:
    """Where and how the Trainer gets GPUs on a cluster. ``count: 0`` (the default) compiles a CPU-only Trainer."""

    count: int = 0
    accelerator_type: str = "nvidia.com/gpu"
    node_selector: dict = dataclasses.field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list = dataclasses.field(default_factory=lambda: [Toleration()])


@dataclasses.dataclass
class TrainerTFJob:
    """``workers`` >= 2: the Trainer step runs as a Kubeflow Training Operator TFJob of that many workers
    (MultiWorkerMirroredStrategy; components/trainer/tfjob.py) with trainer_gpu's pool settings; 0: in the task."""

    workers: int = 0
    namespace: str = ""  # default: kfp.namespace
    service_account: str = ""  # needs create/get/delete on tfjobs and get on pods/log
    timeout_seconds: int = 86400

    def for_component(self, namespace: str, gpu: "GpuPool") -> dict:
        """What the Trainer component's ``tfjob`` parameter gets ({}: train in the task)."""
        if self.workers < 2:
            return {}
        return {"workers": self.workers, "namespace": self.namespace or namespace,
                "service_account": self.service_account, "timeout_seconds": self.timeout_seconds,
                "gpu": dataclasses.asdict(gpu) if gpu.count else {}}


@dataclasses.dataclass
class Schedule:
    """The recurring run ``kubetfx schedule`` creates (KFP cron: six fields, seconds first)."""

    cron: str = "0 0 2 * * *"
    name: str = ""  # default: <pipeline>-<env>
    max_concurrency: int = 1
    enabled: bool = True


@dataclasses.dataclass
class KfpSettings:
    """How to reach Kubeflow Pipelines. ``KFP_HOST`` / ``KFP_NAMESPACE`` in the environment override."""

    host: str = ""
    namespace: str = ""  # the Kubeflow profile namespace on multi-user installs; empty on single-user
    experiment: str = "kubetfx"
    service_account: str = ""  # the runs' Kubernetes service account (manifests: kubetfx-pipeline-runner)
    token: str = "none"  # none | env:VAR (bearer token) | file:PATH (service-account token) | cookie:VAR
    ui_url: str = ""  # where run links point; default: host
    schedule: Schedule = dataclasses.field(default_factory=Schedule)

    def resolved_host(self) -> str:
        return (os.environ.get("KFP_HOST") or self.host).rstrip("/")

    def resolved_namespace(self) -> str:
        return os.environ.get("KFP_NAMESPACE") or self.namespace


@dataclasses.dataclass
class ModelRepository:
    """Where pipelines push versions (``uri`` inside the pods) and where KServe reads them.

    ``pvc``: a PersistentVolumeClaim mounted at ``uri`` in the Evaluator and Pusher pods;
    KServe then loads ``pvc://<pvc>/<model>/<version>``. Object stores (``s3://``, ``gs://``):
    ``credentials_secret`` names a Secret whose ``credentials_keys`` become environment
    variables of those pods (the same names, e.g. AWS_ACCESS_KEY_ID).
    """

    uri: str = ""
    pvc: str = ""
    credentials_secret: str = ""
    credentials_keys: list = dataclasses.field(default_factory=lambda: ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])

    def storage_uri_base(self) -> str:
        """The base KServe's storage initializer reads the repository from."""
        return f"pvc://{self.pvc}" if self.pvc else self.uri


@dataclasses.dataclass
class PredictionLog:
    """Where the prediction log lives in pods: ``path`` (where the predictor/sink write and the monitor reads),
    on the PersistentVolumeClaim ``pvc`` when set (manifests/base/prediction-log.yaml)."""

    path: str = ""
    pvc: str = ""


TUNER_BACKENDS = ("in-task", "katib")
KATIB_ALGORITHMS = ("tpe", "random", "bayesianoptimization", "multivariate-tpe", "cmaes", "grid", "hyperband", "sobol")


@dataclasses.dataclass
class TunerSettings:
    """Where the Tuner's trials run on a cluster: ``in-task`` (one pod runs the search; on the GPU pool when the
    environment has one) or ``katib`` (a Katib Experiment; one pod per trial, on the GPU pool when there is one)."""

    backend: str = "in-task"
    algorithm: str = "tpe"                 # Katib's suggestion algorithm
    early_stopping: bool = True            # Katib's median-stop early stopping of bad trials
    max_failed_trials: int = 3
    namespace: str = ""                    # where the Experiment goes (default: the pipeline's own namespace)
    poll_seconds: int = 15
    workspace_pvc: str = ""                # katib: a ReadWriteMany PVC the Tuner copies its inputs to for the trials
    workspace_path: str = "/mnt/tuner-workspace"  # where that PVC is mounted (Tuner task and trial pods)


@dataclasses.dataclass
class PipelineConfig:
    name: str = "default"
    source: str = ""  # the file it came from (for messages)
    manifests: str = ""  # kustomize overlay `kubetfx deploy` applies (empty: no cluster objects)
    serving_template: str = ""  # kustomization rendering the Pusher's InferenceService (default: <manifests>/serving)
    deploy: bool = True  # with a serving template: the Pusher applies the InferenceService (false: writes it only)
    parameters: dict = dataclasses.field(default_factory=dict)  # pipeline parameter defaults for this environment
    kfp: KfpSettings = dataclasses.field(default_factory=KfpSettings)
    model_repository: ModelRepository = dataclasses.field(default_factory=ModelRepository)
    prediction_log: PredictionLog = dataclasses.field(default_factory=PredictionLog)
    trainer_gpu: GpuPool = dataclasses.field(default_factory=GpuPool)
    trainer_tfjob: TrainerTFJob = dataclasses.field(default_factory=TrainerTFJob)
    resources: dict = dataclasses.field(default_factory=dict)  # task name ("trainer", ...) -> Resources
    tuner: TunerSettings = dataclasses.field(default_factory=TunerSettings)
    # The canary decision's sequential test (components/model_monitor/canary.py CanarySettings: alpha, margins).
    canary: dict = dataclasses.field(default_factory=dict)

    def canary_settings(self):
        """The canary test's settings (validated when the config is loaded)."""
        from kubetfx.components.model_monitor.canary import CanarySettings

        return CanarySettings(**self.canary)

    def cpu_only(self) -> "PipelineConfig":
        return dataclasses.replace(self, trainer_gpu=dataclasses.replace(self.trainer_gpu, count=0))

    def manifests_path(self) -> str:
        """``manifests`` resolved against the repository root (configs name it relative to the root)."""
        return _from_root(self.manifests)

    def serving_template_path(self) -> str:
        """The kustomization of the Pusher's InferenceService template (empty: the Pusher only pushes)."""
        if self.serving_template:
            return _from_root(self.serving_template)
        return os.path.join(self.manifests_path(), "serving") if self.manifests else ""


def _from_root(path: str) -> str:
    if not path or os.path.isabs(path):
        return path
    return os.path.join(os.path.dirname(os.path.dirname(CONFIGS_DIR)), path)


def _build(cls, data, where: str):
    """``cls(**data)`` for the plain fields of ``cls``; nested dataclass fields are built by the caller."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    for name, value in data.items():
        default = fields[name].default if fields[name].default is not dataclasses.MISSING \
            else fields[name].default_factory()
        expected = type(default)
        if dataclasses.is_dataclass(default) or value is None or isinstance(value, expected) \
                or (expected is float and isinstance(value, int)):
            continue
        raise ConfigError(f"{where}.{name}: expected {expected.__name__}, got {value!r}")
    return cls(**data)


def _gpu_pool(data, where: str) -> GpuPool:
    gpu = _build(GpuPool, data, where)
    if isinstance(gpu.count, bool) or not isinstance(gpu.count, int) or gpu.count < 0:
        raise ConfigError(f"{where}.count must be an integer >= 0, got {gpu.count!r}")
    if not all(isinstance(v, str) for v in gpu.node_selector.values()):
        raise ConfigError(f"{where}.node_selector must map label keys to string values")
    gpu.tolerations = [t if isinstance(t, Toleration) else _build(Toleration, t, f"{where}.tolerations[{i}]")
                       for i, t in enumerate(gpu.tolerations)]
    for i, toleration in enumerate(gpu.tolerations):
        if toleration.operator not in ("Exists", "Equal"):
            raise ConfigError(f"{where}.tolerations[{i}].operator must be Exists or Equal")
        if toleration.effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute", ""):
            raise ConfigError(f"{where}.tolerations[{i}].effect must be NoSchedule, PreferNoSchedule or NoExecute")
    return gpu


def _trainer_tfjob(data, where: str) -> TrainerTFJob:
    tfjob = _build(TrainerTFJob, data, where)
    for name in ("workers", "timeout_seconds"):
        value = getattr(tfjob, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}.{name} must be an integer >= 0, got {value!r}")
    if tfjob.workers == 1:
        raise ConfigError(f"{where}.workers: 1 would be a TFJob of one worker; use 0 (train in the task) or >= 2")
    for name in ("namespace", "service_account"):
        value = getattr(tfjob, name)
        if value and not kubernetes_values.DNS1123_LABEL.match(value):
            raise ConfigError(f"{where}.{name} '{value}' is not a valid Kubernetes name")
    return tfjob


def _resources(data: dict, where: str) -> dict:
    resources = {}
    for task, values in data.items():
        resources[task] = _build(Resources, values, f"{where}.{task}")
        for name, quantity in dataclasses.asdict(resources[task]).items():
            if not quantity:
                continue
            if not kubernetes_values.is_quantity(quantity):
                raise ConfigError(f"{where}.{task}.{name} '{quantity}' is not a Kubernetes quantity "
                                  "(examples: 500m, 2, 4Gi)")
            if kubernetes_values.parse_quantity(quantity) < 0:
                raise ConfigError(f"{where}.{task}.{name} '{quantity}' is negative (the API server refuses it)")
    return resources


def _kfp(data, where: str) -> KfpSettings:
    kfp = _build(KfpSettings, data, where)
    kfp.schedule = _build(Schedule, data.get("schedule") if isinstance(data, dict) else None, f"{where}.schedule")
    source, _, argument = kfp.token.partition(":")
    if source not in TOKEN_SOURCES or (source != "none" and not argument):
        raise ConfigError(f"{where}.token '{kfp.token}' is not a token source: use none, env:VAR (a bearer token in "
                          "$VAR), file:PATH (e.g. a projected service-account token) or cookie:VAR (a session cookie)")
    if kfp.namespace and not kubernetes_values.DNS1123_LABEL.match(kfp.namespace):
        raise ConfigError(f"{where}.namespace '{kfp.namespace}' is not a valid namespace name")
    if len(kfp.schedule.cron.split()) != 6:
        raise ConfigError(f"{where}.schedule.cron '{kfp.schedule.cron}' must have six fields "
                          "(KFP cron: second minute hour day-of-month month day-of-week, e.g. '0 0 2 * * *')")
    return kfp


def _model_repository(data, where: str) -> ModelRepository:
    repository = _build(ModelRepository, data, where)
    if repository.pvc:
        if not kubernetes_values.DNS1123_LABEL.match(repository.pvc):
            raise ConfigError(f"{where}.pvc '{repository.pvc}' is not a valid PersistentVolumeClaim name")
        if not repository.uri.startswith("/"):
            raise ConfigError(f"{where}.uri must be the absolute path where the PVC '{repository.pvc}' is mounted "
                              f"in the pipeline's pods (e.g. /mnt/model-repository), got '{repository.uri}'")
    elif repository.uri and not repository.uri.startswith(("s3://", "gs://")):
        raise ConfigError(f"{where}.uri '{repository.uri}': a cluster reads the model repository from a PVC (set "
                          "pvc: and uri: <mount path>) or an object store (s3://..., gs://...)")
    if repository.credentials_secret and not kubernetes_values.DNS1123_LABEL.match(repository.credentials_secret):
        raise ConfigError(f"{where}.credentials_secret '{repository.credentials_secret}' is not a valid Secret name")
    return repository


def _canary(config: PipelineConfig, where: str) -> None:
    import dataclasses as dc

    from kubetfx.components.model_monitor.canary import CanarySettings

    known = {f.name: f for f in dc.fields(CanarySettings)}
    unknown = sorted(set(config.canary) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for name, value in config.canary.items():
        expected = type(known[name].default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (expected is int and
                                                                               not isinstance(value, int)):
            raise ConfigError(f"{where}.{name}: expected {expected.__name__}, got {value!r}")
    try:
        config.canary_settings()
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _tuner(data, where: str) -> TunerSettings:
    settings = _build(TunerSettings, data, where)
    if settings.backend not in TUNER_BACKENDS:
        raise ConfigError(f"{where}.backend '{settings.backend}': use one of {', '.join(TUNER_BACKENDS)}")
    if settings.algorithm not in KATIB_ALGORITHMS:
        raise ConfigError(f"{where}.algorithm '{settings.algorithm}': Katib's algorithms are "
                          f"{', '.join(KATIB_ALGORITHMS)}")
    if settings.max_failed_trials < 0 or settings.poll_seconds < 1:
        raise ConfigError(f"{where}: max_failed_trials must be >= 0 and poll_seconds >= 1")
    if settings.backend == "katib" and not settings.workspace_pvc:
        raise ConfigError(f"{where}.workspace_pvc: the katib backend needs a ReadWriteMany PersistentVolumeClaim the "
                          "Tuner shares its inputs with the trial pods through (e.g. kubetfx-tuner-workspace)")
    if settings.workspace_pvc and not kubernetes_values.DNS1123_LABEL.match(settings.workspace_pvc):
        raise ConfigError(f"{where}.workspace_pvc '{settings.workspace_pvc}' is not a valid PersistentVolumeClaim name")
    if not settings.workspace_path.startswith("/"):
        raise ConfigError(f"{where}.workspace_path must be an absolute path, got '{settings.workspace_path}'")
    if settings.namespace and not kubernetes_values.DNS1123_LABEL.match(settings.namespace):
        raise ConfigError(f"{where}.namespace '{settings.namespace}' is not a valid namespace name")
    return settings


def from_dict(data: dict, source: str = "config", name: str = "default") -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    config = _build(PipelineConfig, data, source)
    config.name, config.source = data.get("name") or name, source
    config.kfp = _kfp(data.get("kfp"), f"{source}: kfp")
    config.model_repository = _model_repository(data.get("model_repository"), f"{source}: model_repository")
    config.prediction_log = _build(PredictionLog, data.get("prediction_log"), f"{source}: prediction_log")
    if config.prediction_log.pvc and not config.prediction_log.path.startswith("/"):
        raise ConfigError(f"{source}: prediction_log.path must be the absolute path where the PVC "
                          f"'{config.prediction_log.pvc}' is mounted, got '{config.prediction_log.path}'")
    config.trainer_gpu = _gpu_pool(data.get("trainer_gpu"), f"{source}: trainer_gpu")
    config.trainer_tfjob = _trainer_tfjob(data.get("trainer_tfjob"), f"{source}: trainer_tfjob")
    config.resources = _resources(config.resources or {}, f"{source}: resources")
    config.tuner = _tuner(data.get("tuner"), f"{source}: tuner")
    config.parameters = dict(config.parameters or {})
    config.canary = dict(config.canary or {})
    _canary(config, f"{source}: canary")
    if config.manifests and not os.path.isfile(os.path.join(config.manifests_path(), "kustomization.yaml")):
        raise ConfigError(f"{source}: manifests '{config.manifests}' is not a kustomize directory "
                          "(no kustomization.yaml there)")
    template = config.serving_template_path()
    if config.serving_template and not os.path.isfile(os.path.join(template, "kustomization.yaml")):
        raise ConfigError(f"{source}: serving_template '{config.serving_template}' is not a kustomize directory "
                          "(no kustomization.yaml there)")
    return config


def load(path: str | None) -> PipelineConfig:
    if not path:
        return PipelineConfig()
    if not os.path.isfile(path):
        raise ConfigError(f"pipeline config not found: {path}")
    with open(path, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return from_dict(data, source=path, name=os.path.splitext(os.path.basename(path))[0])


def environments() -> list[str]:
    """The environments shipped in ``pipelines/configs/``."""
    return sorted(os.path.splitext(f)[0] for f in os.listdir(CONFIGS_DIR) if f.endswith(".yaml"))


def load_environment(name: str) -> PipelineConfig:
    """``pipelines/configs/<name>.yaml``; a clear error listing the known ones otherwise."""
    path = os.path.join(CONFIGS_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        raise ConfigError(f"unknown environment '{name}': no {os.path.relpath(path)}; "
                          f"known: {', '.join(environments())}")
    return load(path)
