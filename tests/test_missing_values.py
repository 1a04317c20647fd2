"""Missing values end to end on public datasets nobody here wrote: ExampleGen -> StatisticsGen ->
SchemaGen -> ExampleValidator -> Transform (-> Trainer), the real executors on real CSV files.

* Ames Housing (De Cock 2011; the first rows of Kaggle's House Prices ``train.csv``, some
  columns, typed in by hand): ``NA`` in ``Alley`` is the category "No alley access"
  (``data_description.txt``), ``NA`` in ``LotFrontage`` a missing number.
* Palmer Penguins as the ``palmerpenguins`` package ships it (``penguins.csv``, 344 rows):
  ``NA`` means missing everywhere, in the measurements and in ``sex``.
* scikit-learn's wine data written through pandas with blank ``magnesium`` cells: the model
  imputes them at batch inference and serving as Transform did in training.
"""

import os

import numpy as np
import pyarrow.compute as pc
import pytest

from kubetfx.components.common import examples
from kubetfx.components.common.errors import ConfigError, InputDataError
from kubetfx.components.example_gen import executor as example_gen
from kubetfx.components.example_validator import executor as example_validator
from kubetfx.components.schema_gen import executor as schema_gen
from kubetfx.components.statistics_gen import executor as statistics_gen
from kubetfx.components.transform import default_preprocessing
from kubetfx.components.transform import executor as transform
from kubetfx.pipelines.penguin import data as penguin_data

AMES_CSV = """\
Id,MSSubClass,MSZoning,LotFrontage,LotArea,Street,Alley,LotShape,SalePrice
1,60,RL,65,8450,Pave,NA,Reg,208500
2,20,RL,80,9600,Pave,NA,Reg,181500
3,60,RL,68,11250,Pave,NA,IR1,223500
4,70,RL,60,9550,Pave,NA,IR1,140000
5,60,RL,84,14260,Pave,NA,IR1,250000
6,50,RL,85,14115,Pave,NA,IR1,143000
7,20,RL,75,10084,Pave,NA,Reg,307000
8,60,RL,NA,10382,Pave,NA,IR1,200000
9,50,RM,51,6120,Pave,NA,Reg,129900
10,190,RL,50,7420,Pave,NA,Reg,118000
11,20,RL,70,11200,Pave,NA,Reg,129500
12,60,RL,85,11924,Pave,NA,IR1,345000
13,20,RL,NA,12968,Pave,NA,IR2,144000
14,20,RL,91,10652,Pave,NA,IR1,279500
15,20,RL,NA,10920,Pave,NA,IR1,157000
16,45,RM,51,6120,Pave,NA,Reg,132000
17,20,RL,NA,11241,Pave,NA,IR1,149000
18,90,RL,72,10791,Pave,NA,Reg,90000
19,20,RL,66,13695,Pave,NA,Reg,159000
20,20,RL,70,7560,Pave,NA,Reg,139000
22,45,RM,57,7449,Pave,Grvl,Reg,139400
31,70,C (all),50,8500,Pave,Pave,Reg,40000
"""


def run_chain(tmp_path, csv_path: str, label: str, **example_gen_args) -> dict:
    """Every executor up to Transform; returns the artifact directories and metadata."""
    out = {name: str(tmp_path / name) for name in
           ("examples", "statistics", "schema", "anomalies", "transform_graph", "transformed")}
    out["example_gen"] = example_gen.run(csv_path, out["examples"], label_column=label,
                                         report_path=str(tmp_path / "example_gen.md"), **example_gen_args)
    statistics_gen.run(out["examples"], out["statistics"])
    schema_gen.run(out["statistics"], out["schema"], label_column=label)
    out["validation"] = example_validator.run(out["statistics"], out["schema"], out["anomalies"])
    out["transform"] = transform.run(out["examples"], out["schema"], out["transform_graph"], out["transformed"],
                                     label_column=label, report_path=str(tmp_path / "transform.md"))
    return out


def present_values(examples_dir: str, split: str, name: str) -> np.ndarray:
    return pc.list_flatten(examples.read_split(examples_dir, split).column(name)).to_numpy().astype(np.float64)


def serialize_example(row: dict) -> bytes:
    """A raw tf.Example with one value per feature (a feature left out = missing)."""
    import tensorflow as tf

    def feature(value):
        if isinstance(value, str):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))

    return tf.train.Example(features=tf.train.Features(
        feature={k: feature(v) for k, v in row.items()})).SerializeToString()


def raw_transform(graph_dir: str, rows: list[dict]) -> dict:
    """Raw examples through the transform graph, as TFTransformOutput.transform_raw_features applies it."""
    import tensorflow as tf
    import tensorflow_transform as tft

    output = tft.TFTransformOutput(graph_dir)
    parsed = tf.io.parse_example([serialize_example(row) for row in rows], output.raw_feature_spec())
    return {name: tensor.numpy() for name, tensor in output.transform_raw_features(parsed).items()}


@pytest.fixture(scope="module")
def ames(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ames")
    (root / "train.csv").write_text(AMES_CSV)
    return run_chain(root, str(root / "train.csv"), "SalePrice")


def test_ames_na_is_a_category_in_alley_and_missing_in_lot_frontage(ames):
    metadata = ames["example_gen"]
    assert metadata["column_types"]["Alley"] == "string" and metadata["column_types"]["LotFrontage"] == "integer"
    assert metadata["missing_values"] == {"LotFrontage": {"NA": 4}}
    assert metadata["na_like_values_kept"] == {"Alley": {"NA": 20}}
    assert ames["validation"]["anomalies_found"] == 0
    vocabulary = open(os.path.join(ames["transform_graph"], "transform_fn", "assets", "vocab_Alley")).read().split()
    assert vocabulary[0] == "NA"  # the most frequent value: no alley access
    assert default_preprocessing.MISSING_TOKEN not in vocabulary  # Alley is never missing


def test_ames_lot_frontage_is_imputed_with_the_train_mean_also_at_serving(ames):
    imputed = ames["transform"]["imputation"]["LotFrontage"]
    train_mean = present_values(ames["examples"], "train", "LotFrontage").mean()
    assert imputed["strategy"] == "mean" and imputed["value"] == pytest.approx(train_mean, rel=1e-6)
    report = open(os.path.join(os.path.dirname(ames["examples"]), "transform.md")).read()
    assert "| `LotFrontage` | mean |" in report

    request = {"Id": 8, "MSSubClass": 60, "MSZoning": "RL", "LotArea": 10382, "Street": "Pave", "Alley": "NA",
               "LotShape": "IR1", "SalePrice": 200000}
    missing, explicit, other = (raw_transform(ames["transform_graph"], [row])["LotFrontage"][0, 0] for row in
                                (request, {**request, "LotFrontage": round(imputed["value"])},
                                 {**request, "LotFrontage": round(imputed["value"]) + 10}))
    z = ames["transform"]["z_scores"]["LotFrontage"]
    assert missing == pytest.approx((imputed["value"] - z["mean"]) / z["std"], abs=1e-5)
    assert explicit == pytest.approx(missing, abs=0.1) and other > missing + 0.1


def test_ames_median_imputation(ames, tmp_path):
    metadata = transform.run(ames["examples"], ames["schema"], str(tmp_path / "g"), str(tmp_path / "t"),
                             label_column="SalePrice", numeric_imputation="median")
    imputed = metadata["imputation"]["LotFrontage"]
    values = present_values(ames["examples"], "train", "LotFrontage")
    assert imputed["strategy"] == "median" and values.min() <= imputed["value"] <= values.max()
    assert abs(np.searchsorted(np.sort(values), imputed["value"]) - len(values) / 2) <= 1  # the middle value
    with pytest.raises(ConfigError, match="numeric_imputation must be one of mean, median"):
        transform.run(ames["examples"], ames["schema"], str(tmp_path / "g2"), str(tmp_path / "t2"),
                      label_column="SalePrice", numeric_imputation="zero")


def test_raw_palmer_penguins_train_and_serve_with_missing_values(tmp_path):
    """The raw penguins.csv: NA in sex is missing only when told; the model serves rows without values."""
    import tensorflow as tf

    from kubetfx.components.trainer import executor as trainer

    csv_path = penguin_data.packaged_csv_path()
    default = example_gen.run(csv_path, str(tmp_path / "default"))
    assert default["na_like_values_kept"] == {"sex": {"NA": 11}}
    assert default["missing_values"]["bill_length_mm"] == {"NA": 2} and "sex" not in default["missing_values"]

    chain = run_chain(tmp_path, csv_path, "species", string_null_values=",NA")
    assert chain["example_gen"]["missing_values"]["sex"] == {"NA": 11}
    assert chain["validation"]["anomalies_found"] == 0
    imputation = chain["transform"]["imputation"]
    assert set(imputation) == {"bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"}
    assert imputation["sex"] == {"strategy": "missing_token", "value": default_preprocessing.MISSING_TOKEN,
                                 "in_vocabulary": True}

    model = str(tmp_path / "model")
    trainer.run(chain["transformed"], chain["transform_graph"], chain["schema"], model, str(tmp_path / "run"),
                hyperparameters={"epochs": 2}, seed=7)
    serving = tf.saved_model.load(os.path.join(model, "Format-Serving"))
    complete = {"island": "Torgersen", "bill_length_mm": imputation["bill_length_mm"]["value"],
                "bill_depth_mm": 18.7, "flipper_length_mm": 181, "body_mass_g": 3750, "sex": "male", "year": 2007}
    lacking = {k: v for k, v in complete.items() if k not in ("bill_length_mm", "sex")}

    labelled = [serialize_example({**row, "species": "Adelie"}) for row in (complete, lacking)]  # for TFMA
    features = serving.signatures["transform_features"](examples=tf.constant(labelled))
    assert features["bill_length_mm"].numpy()[0, 0] == pytest.approx(features["bill_length_mm"].numpy()[1, 0])
    vocab_sex = open(os.path.join(chain["transform_graph"], "transform_fn", "assets", "vocab_sex")).read().split()
    assert features["sex"].numpy()[1, 0] == vocab_sex.index(default_preprocessing.MISSING_TOKEN)
    predictions = serving.signatures["serving_default"](examples=tf.constant([serialize_example(lacking)]))
    assert predictions["probabilities"].numpy().sum() == pytest.approx(1.0, abs=1e-4)


# --------------------------------------------------------------------------- what the built-in Transform cannot do


def test_a_required_feature_missing_from_the_data_names_feature_split_and_count(tmp_path):
    """A schema from complete data (body_mass_g required), then a span with NA rows: a clear error."""
    complete, gaps = tmp_path / "complete.csv", tmp_path / "gaps.csv"
    lines = open(penguin_data.packaged_csv_path()).read().splitlines()
    rows = [line for line in lines[1:] if ",NA" not in line]
    complete.write_text("\n".join([lines[0]] + rows) + "\n")
    body_mass = lines[0].split(",").index("body_mass_g")
    with_gaps = []
    for i, row in enumerate(rows):
        fields = row.split(",")
        if i % 50 == 0:
            fields[body_mass] = "NA"
        with_gaps.append(",".join(fields))
    gaps.write_text("\n".join([lines[0]] + with_gaps) + "\n")

    schema = str(tmp_path / "schema")
    example_gen.run(str(complete), str(tmp_path / "complete-examples"))
    statistics_gen.run(str(tmp_path / "complete-examples"), str(tmp_path / "complete-statistics"))
    schema_gen.run(str(tmp_path / "complete-statistics"), schema, label_column="species")
    metadata = example_gen.run(str(gaps), str(tmp_path / "examples"))
    assert metadata["missing_values"] == {"body_mass_g": {"NA": 7}}

    graph = str(tmp_path / "graph")
    with pytest.raises(InputDataError) as error:
        transform.run(str(tmp_path / "examples"), schema, graph, str(tmp_path / "t"), label_column="species")
    message = str(error.value)
    for split in ("train", "eval"):
        batch = examples.read_split(str(tmp_path / "examples"), split)
        lacking = batch.column(batch.schema.get_field_index("body_mass_g")).null_count
        if lacking:
            assert f"{lacking} of {batch.num_rows} examples of split '{split}'" in message
    assert message.startswith("feature 'body_mass_g' has no value in ")
    assert "fixed shape [1]" in message and "value_count { min: 1 max: 1 }" in message
    assert "null_values" in message
    assert not os.path.exists(graph)


def test_a_label_with_missing_values_names_split_and_count(tmp_path):
    lines = open(penguin_data.packaged_csv_path()).read().splitlines()
    lines[10] = "NA," + lines[10].split(",", 1)[1]   # two penguins without a species
    lines[200] = "NA," + lines[200].split(",", 1)[1]
    (tmp_path / "penguins.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as error:
        run_chain(tmp_path, str(tmp_path / "penguins.csv"), "species", string_null_values=",NA")
    message = str(error.value)
    assert message.startswith("label_column 'species' has no value in ")
    assert "examples of split '" in message and "cannot impute a label" in message
    assert "Drop (or fill in) the rows without a label before ExampleGen" in message


# --------------------------------------------------------------------------- imputed at inference and serving

WINE_LABEL = "Cultivar Class"


@pytest.fixture(scope="module")
def wine(tmp_path_factory) -> dict:
    """scikit-learn's wine data with every 15th ``magnesium`` cell blank (12), through Transform and the Trainer."""
    from sklearn.datasets import load_wine

    from kubetfx.components.trainer import executor as trainer

    root = tmp_path_factory.mktemp("wine")
    frame = load_wine(as_frame=True).frame.rename(columns={"target": WINE_LABEL})
    frame.loc[frame.index[::15], "magnesium"] = np.nan
    frame.to_csv(root / "wine.csv", index=False)
    chain = run_chain(root, str(root / "wine.csv"), WINE_LABEL)
    chain["model"] = str(root / "model")
    trainer.run(chain["transformed"], chain["transform_graph"], chain["schema"], chain["model"], str(root / "run"),
                hyperparameters={"epochs": 2}, seed=7)
    chain["frame"], chain["csv"] = frame, str(root / "wine.csv")
    return chain


def _prediction_columns(table) -> dict:
    return {name: table.column(name).to_numpy() for name in table.column_names
            if name.startswith(("probability_", "predicted_", "prediction"))}


def test_wine_model_lets_only_the_imputed_feature_be_null(wine):
    import json

    from kubetfx.components.common import layout

    assert set(wine["transform"]["imputation"]) == {"magnesium"}
    info = json.load(open(os.path.join(wine["model"], layout.MODEL_INFO_FILE)))
    assert {f["name"] for f in info["raw_features"] if f.get("allow_nan")} == {"magnesium"}
    assert len(info["raw_features"]) == len(wine["frame"].columns) - 1


def test_wine_bulk_inferrer_imputes_blank_magnesium_as_training_did(wine, tmp_path):
    import pyarrow.parquet as pq

    from kubetfx.components.bulk_inferrer import executor as bulk_inferrer

    result = bulk_inferrer.run(wine["model"], wine["examples"], str(tmp_path / "result"), split="eval")
    assert result["rejected"] == 0 and result["scored"] == result["rows"]
    scored = pq.read_table(str(tmp_path / "result" / "predictions.parquet"))
    blank = np.isnan(scored.column("magnesium").to_numpy(zero_copy_only=False))
    assert blank.sum() > 0  # eval rows without magnesium, scored
    from_csv = bulk_inferrer.predict_to_file(wine["model"], wine["csv"], str(tmp_path / "wine-predictions.csv"))
    assert from_csv["rejected"] == 0 and from_csv["scored"] == len(wine["frame"])  # `kubetfx predict --data wine.csv`

    inputs = scored.select(wine["frame"].columns.tolist()).to_pandas()
    mean = wine["transform"]["imputation"]["magnesium"]["value"]
    outputs = {}
    for fill in (mean, 0.0):
        path = str(tmp_path / f"filled-{fill}.parquet")
        inputs.fillna({"magnesium": fill}).to_parquet(path, index=False)
        bulk_inferrer.predict_to_file(wine["model"], path, str(tmp_path / f"predictions-{fill}.parquet"))
        outputs[fill] = _prediction_columns(pq.read_table(str(tmp_path / f"predictions-{fill}.parquet")))
    for name, values in _prediction_columns(scored).items():
        if values.dtype.kind == "f":
            np.testing.assert_allclose(values, outputs[mean][name], rtol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(values, outputs[mean][name], err_msg=name)
    assert any(not np.allclose(values[blank], outputs[0.0][name][blank])
               for name, values in outputs[mean].items() if name.startswith("probability_"))


def test_wine_predictor_answers_null_magnesium_and_refuses_other_nulls(wine, tmp_path):
    from helpers.predictor import serve_pushed

    from kubetfx.components.bulk_inferrer import executor as bulk_inferrer
    from kubetfx.components.common import tfmd
    from kubetfx.components.predictor.schema_check import RequestError

    mean = wine["transform"]["imputation"]["magnesium"]["value"]
    row = wine["frame"].drop(columns=[WINE_LABEL]).iloc[1].to_dict()
    blank, filled = {**row, "magnesium": None}, {**row, "magnesium": mean}

    servable = bulk_inferrer.load_model(wine["model"])
    with pytest.raises(RequestError, match="instance 0: feature 'magnesium': infinite"):
        servable.rules.from_instances([{**row, "magnesium": float("inf")}])  # imputed means missing, not any value
    servable.close()

    server = serve_pushed(wine["model"], tmp_path, "wine", schema=tfmd.schema_path(wine["schema"]))
    try:
        server.wait_ready()
        status, answer = server.predict([blank, filled])
        assert status == 200, answer
        first, second = answer["predictions"]
        assert first["class"] == second["class"]
        np.testing.assert_allclose(list(first["probabilities"].values()), list(second["probabilities"].values()),
                                   rtol=1e-6)
        status, answer = server.predict([{**row, "alcohol": None}])
        assert status == 400
        assert answer["error"] == "instance 0: feature 'alcohol': null (NaN) is not allowed for this feature (got null)"
    finally:
        server.stop()
