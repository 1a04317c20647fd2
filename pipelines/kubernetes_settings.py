"""Kubernetes settings applied to a pipeline task, as plain functions (the kfp-kubernetes style).

They only change the compiled YAML; kfp.local ignores them.
"""

from kfp import kubernetes

from kubetfx.pipelines.config import GpuPool, Resources


def apply_resources(task, resources: Resources | None):
    if resources is None:
        return task
    for setter, value in ((task.set_cpu_request, resources.cpu_request), (task.set_cpu_limit, resources.cpu_limit),
                          (task.set_memory_request, resources.memory_request),
                          (task.set_memory_limit, resources.memory_limit)):
        if value:
            setter(str(value))
    return task


def apply_gpu_pool(task, gpu: GpuPool):
    """Request ``gpu.count`` GPUs and schedule onto the GPU node pool (no-op for count 0)."""
    if not gpu.count:
        return task
    task.set_accelerator_type(gpu.accelerator_type).set_accelerator_limit(gpu.count)
    for key, value in gpu.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in gpu.tolerations:
        kubernetes.add_toleration(task, key=toleration.key or None, operator=toleration.operator,
                                  value=toleration.value or None, effect=toleration.effect or None)
    return task
