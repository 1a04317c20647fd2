"""TFX module files with their ``tfx`` imports unchanged: kubetfx serves ``tfx.v1`` and TFX's module paths
while it loads them (TFX is not installed here), says in one line what it lacks, leaves other imports'
errors as they were, steps aside for a real TFX, and never silently ignores a once-read variable."""

import json
import os
import sys
import textwrap

import pytest

from kubetfx.components.common import module_loader
from kubetfx.components.common.errors import ConfigError
from kubetfx.components.trainer import executor, fn_args, keras_mode
from kubetfx.components.trainer.tfx_compat import alias, components
from kubetfx.pipelines import preflight
from kubetfx.pipelines.local import warm_tasks

from helpers.pipeline_cache import tfx_penguin_pipeline

# Written for this test in TFX's documented module-file API (tfx.v1, fn_args_utils, tfx_bsl's tfxio); it trains
# on TFX's penguin features as Transform left them (culmen_*_xf, flipper_length_mm_xf, body_mass_g_xf; species_xf).
TFX_STYLE_MODULE = """
import os
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx.dsl.io import fileio
from tfx_bsl.public import tfxio

FEATURES = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]
LABEL = "species"


def preprocessing_fn(inputs):
    return {f"{key}_xf": inputs[key] for key in FEATURES + [LABEL]}


def _dataset(fn_args: FnArgs, files, accessor: DataAccessor, batch_size: int):
    schema = tft.TFTransformOutput(fn_args.transform_output).transformed_metadata.schema
    options = tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=f"{LABEL}_xf")
    return accessor.tf_dataset_factory(files, options, schema).repeat()


def _model(learning_rate: float) -> tf.keras.Model:
    inputs = [tf.keras.layers.Input(shape=(1,), name=f"{key}_xf") for key in FEATURES]
    hidden = tf.keras.layers.Dense(8, activation="relu")(tf.keras.layers.concatenate(inputs))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, activation="softmax")(hidden))
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
    return model


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Choice("learning_rate", [1e-2, 1e-3])
    tuner = keras_tuner.RandomSearch(lambda hp: _model(hp.get("learning_rate")), max_trials=2, hyperparameters=hp,
                                     objective="val_sparse_categorical_accuracy", directory=fn_args.working_dir)
    train = _dataset(fn_args, fn_args.train_files, fn_args.data_accessor, 20)
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs={"x": train, "steps_per_epoch": fn_args.train_steps})


def run_fn(fn_args: tfx.components.FnArgs):
    train = _dataset(fn_args, fn_args.train_files, fn_args.data_accessor, 20)
    evaluation = _dataset(fn_args, fn_args.eval_files, fn_args.data_accessor, 10)
    model = _model(1e-2)
    model.fit(train, steps_per_epoch=fn_args.train_steps, epochs=3, validation_data=evaluation,
              validation_steps=fn_args.eval_steps, verbose=0)
    output = tft.TFTransformOutput(fn_args.transform_output)
    model.tft_layer = output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        spec = output.raw_feature_spec()
        spec.pop(LABEL)
        return {"outputs": model(model.tft_layer(tf.io.parse_example(serialized, spec)))}

    tf.saved_model.save(model, fn_args.serving_model_dir, signatures={"serving_default": serve})
    assert tfx.dsl.io.fileio.exists(fn_args.serving_model_dir) and fileio.isdir(fn_args.serving_model_dir)
    return {"val_accuracy": model.evaluate(evaluation, steps=fn_args.eval_steps, verbose=0)[1]}
"""


def write(tmp_path, body: str, name: str = "module.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def line_of(body: str, text: str) -> int:
    return next(number for number, line in enumerate(textwrap.dedent(body).splitlines(), 1) if text in line)


# --------------------------------------------------------------------------- TFX-style module, unchanged


def test_a_tfx_style_module_trains_with_its_tfx_imports_unchanged(tmp_path_factory):
    import numpy as np
    import tensorflow as tf

    from kubetfx.components.common import examples

    pipeline = tfx_penguin_pipeline(tmp_path_factory)
    root = tmp_path_factory.mktemp("tfx-alias")
    module = write(root, TFX_STYLE_MODULE, "tfx_style_module.py")
    preflight.check_module_file(module, eval_steps=5, train_steps=50)
    result = executor.run(pipeline["transformed"], pipeline["transform_graph"], pipeline["schema"],
                          str(root / "model"), str(root / "run"), module_file=module, train_steps=50, eval_steps=5)
    assert result["problem_type"] == "custom" and result["keras"] == "tf_keras"
    assert result["metrics"]["val_accuracy"] > 0.8
    model = tf.saved_model.load(str(root / "model" / "Format-Serving"))
    records = examples.read_split_records(pipeline["examples"], "eval")
    (output,) = model.signatures["serving_default"](examples=tf.constant(records)).values()
    labels = np.array([v[0] for v in examples.decode_examples(records).column("species").to_pylist()])
    assert np.mean(np.argmax(output.numpy(), axis=1) == labels) > 0.8


def test_the_modules_tfx_names_are_kubetfxs_objects_and_leave_no_tfx_behind(tmp_path):
    module = module_loader.load_module(write(tmp_path, TFX_STYLE_MODULE))
    assert module.tfx.components.FnArgs is fn_args.FnArgs is module.FnArgs
    assert module.DataAccessor is fn_args.DataAccessor
    assert module.tuner_fn.__annotations__["return"] is components.TunerFnResult
    assert module.fileio.exists is module.tfx.dsl.io.fileio.exists and module.fileio.exists(str(tmp_path))
    # outside loading, nothing in this process sees a tfx package
    assert not [name for name in sys.modules if name == "tfx" or name.startswith("tfx.")]
    with pytest.raises(ModuleNotFoundError):
        import tfx  # noqa: F401


@pytest.mark.parametrize("statement", [
    "from tfx.components.trainer.executor import TrainerFnArgs",
    "from tfx.components.tuner.component import TunerFnResult",
    "import tfx.v1.dsl.io.fileio as fileio",
    "from tfx.v1.components import FnArgs, DataAccessor, TunerFnResult",
    "import tfx",
])
def test_the_module_paths_tfx_module_files_import(tmp_path, statement):
    module_loader.load_module(write(tmp_path, statement + "\n"))
    preflight.check_module_file(write(tmp_path, f"{statement}\ndef preprocessing_fn(i): pass\n"
                                                "def run_fn(a): pass\n", "checked.py"), 5, 5)


# --------------------------------------------------------------------------- what kubetfx does not provide


UNPROVIDED = {
    "attribute at import": ("from tfx import v1 as tfx\n\nPUSHER = tfx.components.Pusher\n",
                            "PUSHER", "'tfx.v1.components.Pusher' is not provided"),
    "from-import": ("from tfx.components import Trainer\n", "Trainer", "'tfx.components.Trainer' is not provided"),
    "module path": ("import tfx.types.standard_artifacts\n", "import tfx", "'tfx.types' is not provided"),
}


@pytest.mark.parametrize("case", list(UNPROVIDED))
def test_what_kubetfx_lacks_is_one_line_naming_it_and_the_line(tmp_path, case):
    body, marker, message = UNPROVIDED[case]
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as raised:
        module_loader.load_function(path, "run_fn")
    text = str(raised.value)
    assert text.startswith(f"module_file {path}:{line_of(body, marker)}: {message}: TFX is not installed here")
    assert "\n" not in text and "tfx.components.trainer.fn_args_utils.{DataAccessor, FnArgs}" in text
    # preflight says the same before any task runs
    with pytest.raises(ConfigError, match=f"module.py:{line_of(body, marker)}: {message}"):
        preflight.check_module_file(write(tmp_path, body + "def preprocessing_fn(i): pass\ndef run_fn(a): pass\n"),
                                    eval_steps=5, train_steps=5)


def test_an_unprovided_attribute_used_in_run_fn_names_itself(tmp_path):
    body = """
        from tfx import v1 as tfx

        def run_fn(fn_args):
            return tfx.dsl.io.fileio.copytree("a", "b")
    """
    run_fn = module_loader.load_function(write(tmp_path, body), "run_fn")
    with pytest.raises(AttributeError, match=r"^'tfx.v1.dsl.io.fileio.copytree' is not provided"):
        run_fn(None)
    assert hasattr(alias._build()["tfx.v1.components"], "FnArgs")
    assert not hasattr(alias._build()["tfx.v1.components"], "Trainer")  # hasattr still answers False
    with pytest.raises(ConfigError, match=f"module.py:{line_of(body, 'copytree')}: "
                                          "'tfx.v1.dsl.io.fileio.copytree' is not provided"):
        preflight.check_module_file(write(tmp_path, textwrap.dedent(body) + "def preprocessing_fn(i): pass\n"), 5, 5)


def test_unknown_packages_keep_their_message(tmp_path):
    path = write(tmp_path, "import os\nimport not_a_real_package_here\n")
    with pytest.raises(ConfigError) as raised:
        module_loader.load_function(path, "run_fn")
    assert str(raised.value) == (f"module_file: module file '{path}' failed to import at {path}:2: "
                                 "ModuleNotFoundError: No module named 'not_a_real_package_here'")
    checked = write(tmp_path, "import tfx_not_tfx\ndef preprocessing_fn(i): pass\ndef run_fn(a): pass\n", "c.py")
    with pytest.raises(ConfigError) as raised:
        preflight.check_module_file(checked, 5, 5)
    assert str(raised.value) == f"module_file {checked}:1 imports 'tfx_not_tfx', which is not installed here"


def test_a_real_tfx_is_used_where_installed(tmp_path, monkeypatch):
    package = tmp_path / "site" / "tfx"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("REAL = True\n")
    (package / "v1.py").write_text("components = 'the real tfx.v1.components'\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        assert alias.real_tfx_installed()
        module = module_loader.load_module(write(tmp_path, "from tfx import v1 as tfx\nimport tfx as real\n"))
        assert module.tfx.components == "the real tfx.v1.components" and module.real.REAL
        # and preflight checks it as any installed package (no alias rules)
        preflight.check_module_file(write(tmp_path, "from tfx.components import Trainer\n"
                                                    "def preprocessing_fn(i): pass\ndef run_fn(a): pass\n", "c.py"),
                                    5, 5)
    finally:
        for name in [n for n in sys.modules if n == "tfx" or n.startswith("tfx.")]:
            del sys.modules[name]


# --------------------------------------------------------------------------- variables TensorFlow reads once


def _resolved_keras() -> bool:
    """Import TensorFlow and resolve tf.keras as this process's environment says: whether it is tf_keras."""
    import tensorflow as tf

    tf.keras.__name__  # noqa: B018 - resolves the lazy loader
    return keras_mode.current_legacy()


def test_a_keras_choice_tensorflow_already_made_fails_in_one_line(tmp_path, monkeypatch):
    legacy = _resolved_keras()
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1" if legacy else "0")
    other = "0" if legacy else "1"
    body = f"import os\n\nos.environ['TF_USE_LEGACY_KERAS'] = '{other}'\n"
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as raised:
        module_loader.load_module(path)
    assert str(raised.value).startswith(f"module_file {path}:3 sets TF_USE_LEGACY_KERAS='{other}' at import, but "
                                        f"tf.keras in this process is already "
                                        f"{'tf_keras (Keras 2)' if legacy else 'Keras 3'}")
    assert "keras=keras3 or keras=legacy" in str(raised.value) and "\n" not in str(raised.value)
    # the same choice as TensorFlow made (the anchor's setdefault in a tf_keras process) just works
    monkeypatch.delenv("TF_USE_LEGACY_KERAS")
    same = "1" if legacy else "0"
    module_loader.load_module(write(tmp_path, f"import os\nos.environ.setdefault('TF_USE_LEGACY_KERAS', '{same}')\n",
                                    "same.py"))


def test_a_once_read_variable_set_after_tensorflow_was_imported_fails_in_one_line(tmp_path, monkeypatch):
    import tensorflow  # noqa: F401 - as in a warm task process

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    body = "import os\n# oneDNN off, for exact sums\nos.environ['TF_ENABLE_ONEDNN_OPTS'] = '0'\n"
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as raised:
        module_loader.load_module(path)
    assert str(raised.value) == (
        f"module_file {path}:3 sets TF_ENABLE_ONEDNN_OPTS='0' at import, but this process imported TensorFlow "
        "before the module (a warm task process, a notebook, a test), and it reads TF_ENABLE_ONEDNN_OPTS only once, "
        "so the setting would be silently ignored; set TF_ENABLE_ONEDNN_OPTS in the environment kubetfx runs in "
        "instead")
    # logging-only variables are not worth a failure
    module_loader.load_module(write(tmp_path, "import os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n", "quiet.py"))


def test_warm_processes_leave_modules_that_set_such_variables_to_a_cold_start(tmp_path):
    def arguments(module_file):
        executor_input = {"inputs": {"parameterValues": {"module_file": module_file, "train_steps": 5}}}
        return ["--executor_input", json.dumps(executor_input), "--function_to_execute", "trainer"]

    sets_onednn = write(tmp_path, "import os\nos.environ['TF_ENABLE_ONEDNN_OPTS'] = '0'\n", "a.py")
    sets_keras = write(tmp_path, "import os\nos.environ.setdefault('TF_USE_LEGACY_KERAS', '1')\n", "b.py")
    assert warm_tasks._module_sets_once_read_env(arguments(sets_onednn))
    assert not warm_tasks._module_sets_once_read_env(arguments(sets_keras))  # the Trainer handles Keras's
    assert not warm_tasks._module_sets_once_read_env(arguments(""))
    assert not warm_tasks._module_sets_once_read_env(arguments("my_package.module"))
    assert not warm_tasks._module_sets_once_read_env(["--executor_input", "{not json"])
    assert os.path.isfile(sets_onednn)
