"""What the cluster's serving tests share: the namespace, the Pusher's deploy settings, a push, two penguins."""

import os

from kubetfx.components.common import blessing
from kubetfx.components.pusher import executor as pusher
from kubetfx.pipelines import config as pipeline_config
from kubetfx.pipelines.cluster import kustomize, serving_template

NAMESPACE = "kubetfx-dev"  # the dev overlay's namespace (`kubetfx deploy --env dev`)
MODEL_REPOSITORY_CLAIM = "kubetfx-model-repository"
PREDICTION_LOG_CLAIM = "kubetfx-prediction-log"
INSTANCES = [  # two penguins as a client sends them (the penguin data's own columns)
    {"island": "Torgersen", "bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181,
     "body_mass_g": 3750, "sex": "male", "year": 2007},
    {"island": "Biscoe", "bill_length_mm": 46.1, "bill_depth_mm": 13.2, "flipper_length_mm": 211,
     "body_mass_g": 4500, "sex": "female", "year": 2007},
]


def dev_deploy_settings(model_name: str) -> dict:
    """The Pusher's ``deploy`` parameter as `kubetfx compile --env dev` bakes it, for ``model_name``."""
    config = pipeline_config.load_environment("dev")
    return serving_template.deploy_settings(kustomize.render(config.serving_template_path()), model_name=model_name,
                                            storage_uri_base=config.model_repository.storage_uri_base(),
                                            apply=True, where="dev")


def model_repository_base() -> str:
    return pipeline_config.load_environment("dev").model_repository.storage_uri_base()


def push(tmp_path, model_dir: str, repository: str, api, deploy: dict, index: int, model_name: str) -> dict:
    """The Pusher's run for a blessed model, as the pipeline runner's ServiceAccount (``api``)."""
    verdict = os.path.join(str(tmp_path), f"blessing-{model_name}-{index}")
    blessing.write_blessing(verdict, True, ["accuracy above the threshold"])
    return pusher.run(model_dir=model_dir, model_blessing_dir=verdict, infra_blessing_dir=None,
                      push_destination=repository, model_name=model_name,
                      pushed_model_dir=os.path.join(str(tmp_path), f"pushed-{model_name}-{index}"), deploy=deploy,
                      kube_api=api)
