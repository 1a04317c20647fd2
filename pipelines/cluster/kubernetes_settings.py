"""Kubernetes settings applied to a pipeline task, as plain functions (the kfp-kubernetes style).

They only change the compiled YAML; kfp.local ignores them.
"""

from kfp import kubernetes

from kubetfx.pipelines.config import GpuPool, ModelRepository, PredictionLog, Resources, TunerSettings


def apply_resources(task, resources: Resources | None):
    if resources is None:
        return task
    for setter, value in ((task.set_cpu_request, resources.cpu_request), (task.set_cpu_limit, resources.cpu_limit),
                          (task.set_memory_request, resources.memory_request),
                          (task.set_memory_limit, resources.memory_limit)):
        if value:
            setter(str(value))
    return task


def apply_gpu_pool(task, gpu: GpuPool, gpu_image: str):
    """Request ``gpu.count`` GPUs on the GPU node pool, in the image with CUDA (no-op for count 0)."""
    if not gpu.count:
        return task
    task.set_container_image(gpu_image)
    task.set_accelerator_type(gpu.accelerator_type).set_accelerator_limit(gpu.count)
    for key, value in gpu.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in gpu.tolerations:
        kubernetes.add_toleration(task, key=toleration.key or None, operator=toleration.operator,
                                  value=toleration.value or None, effect=toleration.effect or None)
    return task


def mount_model_repository(task, repository: ModelRepository):
    """Give a task that reads or writes the model repository access to it: the PVC, or the store's credentials."""
    if repository.pvc:
        kubernetes.mount_pvc(task, pvc_name=repository.pvc, mount_path=repository.uri)
    if repository.credentials_secret:
        kubernetes.use_secret_as_env(task, secret_name=repository.credentials_secret,
                                     secret_key_to_env={key: key for key in repository.credentials_keys})
    return task


def mount_prediction_log(task, prediction_log: PredictionLog):
    """The monitor reads the prediction log from its volume."""
    if prediction_log.pvc:
        kubernetes.mount_pvc(task, pvc_name=prediction_log.pvc, mount_path=prediction_log.path)
    return task


def mount_tuner_workspace(task, tuner: TunerSettings):
    """The Tuner on Katib copies its inputs to this volume, which every trial pod mounts too."""
    if tuner.workspace_pvc:
        kubernetes.mount_pvc(task, pvc_name=tuner.workspace_pvc, mount_path=tuner.workspace_path)
    return task
