"""KFP interface of the BulkInferrer (logic lives in executor.py)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from kubetfx.components.common.image import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def bulk_inferrer(
    model: Input[Model],
    inference_result: Output[Artifact],
    examples: Input[Dataset] = None,
    model_blessing: Input[Artifact] = None,
    data_uri: str = "",
    split: str = "eval",
    table_format: str = "parquet",
    model_name: str = "model",
):
    """Scores a split of ``examples``, or new data at ``data_uri`` (file, dir, glob, {SPAN}), with the model as the
    predictor serves it; writes TFX's InferenceResult (PredictionLogs) and a table of inputs and predictions."""
    from kubetfx.components.bulk_inferrer import executor
    from kubetfx.components.common.entrypoint import call

    result = call(executor.run, model_dir=model.path, data_uri=data_uri or (examples.path if examples else ""),
                  output_dir=inference_result.path, split=split,
                  model_blessing_dir=model_blessing.path if model_blessing is not None else "",
                  table_format=table_format, model_name=model_name)
    inference_result.metadata.update(result)
