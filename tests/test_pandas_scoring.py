"""Scoring data written by pandas exactly like the training CSV: booleans and blank int/text cells.

scikit-learn's breast-cancer data as a new user writes it with pandas: headers like
``Mean Radius (mm)`` and ``Smoker?``, blank float cells, a nullable ``Int64`` column ``Visit Count``
with blanks (empty fields), a bool column written ``True``/``False``, a text column with blanks and
a text label. ExampleGen stores the bool column as int64 1/0 and Transform imputes the blank
int/text/float cells; the BulkInferrer and the predictor must take the same data (booleans as 1/0,
a blank where the graph imputes as missing, imputed by the model as in training) and still refuse
what training would not have taken. Transform imputes numbers with the median here, so the value
it fills in for ``Visit Count`` is an integer a data file can hold too.
"""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from kubetfx.components.common import examples, feature_values, layout, tfrecord

LABEL = "Diagnosis"
NEW_ROWS = 40


def _cancer_pipeline(root, na_rep: str = "", **tokens) -> dict:
    """ExampleGen -> StatisticsGen -> SchemaGen -> Transform (median) -> Trainer on cancer.csv (blank cells written
    as ``na_rep``; ``tokens``: ExampleGen's null_values / string_null_values); 40 more rows."""
    from sklearn.datasets import load_breast_cancer

    from kubetfx.components.example_gen import executor as example_gen
    from kubetfx.components.schema_gen import executor as schema_gen
    from kubetfx.components.statistics_gen import executor as statistics_gen
    from kubetfx.components.trainer import executor as trainer
    from kubetfx.components.transform import executor as transform

    source = load_breast_cancer(as_frame=True).frame
    n = len(source)
    rng = np.random.default_rng(3)
    malignant = (source["target"] == 0).to_numpy()
    frame = pd.DataFrame({
        "Mean Radius (mm)": source["mean radius"],
        "Mean Texture": source["mean texture"],
        "Worst Area": source["worst area"],
        "Smoker?": (rng.random(n) < np.where(malignant, 0.6, 0.2)),
        "Visit Count": pd.array(rng.integers(0, 8, n) + np.where(malignant, 6, 0), dtype="Int64"),
        "Clinic": rng.choice(["North", "South", "East"], n).astype(object),
        LABEL: np.where(malignant, "malignant", "benign"),
    })
    frame.loc[frame.index[::23], "Mean Radius (mm)"] = np.nan  # 25 blank float cells
    frame.loc[frame.index[5::36], "Visit Count"] = pd.NA         # 16 blank int cells
    frame.loc[frame.index[7::40], "Clinic"] = None               # 15 blank text cells
    training, new = frame.iloc[:-NEW_ROWS], frame.iloc[-NEW_ROWS:]
    training.to_csv(root / "cancer.csv", index=False, na_rep=na_rep)
    new.drop(columns=[LABEL]).to_csv(root / "new.csv", index=False)
    out = {name: str(root / name) for name in ("examples", "statistics", "schema", "graph", "transformed", "model")}
    example_gen.run(str(root / "cancer.csv"), out["examples"], label_column=LABEL, **tokens)
    statistics_gen.run(out["examples"], out["statistics"])
    schema_gen.run(out["statistics"], out["schema"], label_column=LABEL)
    out["transform"] = transform.run(out["examples"], out["schema"], out["graph"], out["transformed"],
                                     label_column=LABEL, numeric_imputation="median")
    trainer.run(out["transformed"], out["graph"], out["schema"], out["model"], str(root / "run"),
                hyperparameters={"epochs": 3}, seed=7)
    out.update(root=str(root), frame=frame, new=new.drop(columns=[LABEL]), new_csv=str(root / "new.csv"))
    return out


@pytest.fixture(scope="module")
def cancer(tmp_path_factory) -> dict:
    """The pipeline on cancer.csv as pandas writes it (blank cells empty)."""
    return _cancer_pipeline(tmp_path_factory.mktemp("cancer"))


def _probabilities(table) -> np.ndarray:
    names = sorted(n for n in table.column_names if n.startswith("probability_"))
    return np.stack([table.column(n).to_numpy(zero_copy_only=False) for n in names], axis=1)


def _median(cancer) -> int:
    value = cancer["transform"]["imputation"]["Visit Count"]["value"]
    assert float(value).is_integer(), value  # the approximate median is one of the (integer) values
    return int(value)


def test_the_model_marks_the_imputed_int_and_text_features(cancer):
    info = json.load(open(os.path.join(cancer["model"], layout.MODEL_INFO_FILE)))
    entries = {f["name"]: f for f in info["raw_features"]}
    assert set(cancer["transform"]["imputation"]) == {"Mean Radius (mm)", "Visit Count", "Clinic"}
    assert entries["Visit Count"]["missing"] == feature_values.MISSING_INT64
    assert entries["Clinic"]["missing"] == feature_values.MISSING_STRING
    assert entries["Mean Radius (mm)"].get("allow_nan") is True and "missing" not in entries["Mean Radius (mm)"]
    assert entries["Smoker?"]["dtype"] == "int64"  # ExampleGen stored the bool column as int64 1/0
    assert not any(key in entries[name] for name in ("Smoker?", "Mean Texture") for key in ("missing", "allow_nan"))


def test_bulk_inferrer_imputes_blank_int_and_text_cells_as_training_did(cancer, tmp_path):
    import tensorflow as tf

    from kubetfx.components.bulk_inferrer import executor as bulk_inferrer

    result = bulk_inferrer.run(cancer["model"], cancer["examples"], str(tmp_path / "result"), split="eval")
    assert result["rejected"] == 0 and result["scored"] == result["rows"], result
    scored = pq.read_table(str(tmp_path / "result" / "predictions.parquet"))
    blank = scored.column("Visit Count").is_null().to_numpy(zero_copy_only=False)
    assert blank.sum() > 0 and scored.column("Clinic").null_count > 0  # blank cells, scored, shown as null

    # The same eval tf.Examples through serving_default (parse_example: an absent feature, as training saw it).
    records = [r for path in examples.split_files(cancer["examples"], "eval") for r in tfrecord.read_file(path)]
    model = tf.saved_model.load(os.path.join(cancer["model"], layout.SERVING_MODEL_DIR))
    expected = model.signatures["serving_default"](examples=tf.constant(records))["probabilities"].numpy()
    np.testing.assert_allclose(_probabilities(scored), expected, rtol=1e-5, atol=1e-6)

    # The blank cells filled with the value Transform imputes give the same predictions; 0 does not.
    inputs = scored.select(list(cancer["new"].columns)).to_pandas()
    outputs = {}
    for fill in (_median(cancer), 0):
        path = str(tmp_path / f"filled-{fill}.parquet")
        inputs.fillna({"Visit Count": fill}).to_parquet(path, index=False)
        counts = bulk_inferrer.predict_to_file(cancer["model"], path, str(tmp_path / f"scored-{fill}.parquet"))
        assert counts["rejected"] == 0
        outputs[fill] = _probabilities(pq.read_table(str(tmp_path / f"scored-{fill}.parquet")))
    np.testing.assert_allclose(_probabilities(scored), outputs[_median(cancer)], rtol=1e-5, atol=1e-6)
    assert not np.allclose(outputs[0][blank], outputs[_median(cancer)][blank], rtol=1e-4)


def test_new_rows_written_like_the_training_csv_are_all_scored(cancer, tmp_path):
    """`kubetfx predict --data new.csv`: True/False, blank int/text/float cells; booleans are 1/0."""
    from kubetfx.components.bulk_inferrer import executor as bulk_inferrer

    new = cancer["new"]
    assert new["Visit Count"].isna().any() and new["Clinic"].isna().any() and new["Mean Radius (mm)"].isna().any()
    assert "True" in open(cancer["new_csv"]).read()
    counts = bulk_inferrer.predict_to_file(cancer["model"], cancer["new_csv"], str(tmp_path / "scored.csv"))
    assert counts["rejected"] == 0 and counts["scored"] == NEW_ROWS, counts
    scored = _probabilities(pacsv.read_csv(str(tmp_path / "scored.csv")))

    as_ints = new.assign(**{"Smoker?": new["Smoker?"].astype(int)})
    as_ints.to_csv(tmp_path / "ints.csv", index=False)
    new.to_parquet(tmp_path / "typed.parquet", index=False)  # a typed bool column
    new.astype({"Clinic": "category"}).to_parquet(tmp_path / "categories.parquet", index=False)  # a dictionary column
    for name in ("ints.csv", "typed.parquet", "categories.parquet"):
        out = str(tmp_path / f"scored-{name}.parquet")
        counts = bulk_inferrer.predict_to_file(cancer["model"], str(tmp_path / name), out)
        assert counts["rejected"] == 0, (name, counts)
        np.testing.assert_allclose(_probabilities(pq.read_table(out)), scored, rtol=1e-5, atol=1e-6, err_msg=name)
    assert set(as_ints["Smoker?"]) == {0, 1}

    bad = new.astype({"Smoker?": object})
    bad.iloc[2, bad.columns.get_loc("Smoker?")] = "yes"
    bad.iloc[3, bad.columns.get_loc("Smoker?")] = "tRUE"  # not a spelling ExampleGen reads as a boolean
    bad.to_csv(tmp_path / "bad.csv", index=False)
    counts = bulk_inferrer.predict_to_file(cancer["model"], str(tmp_path / "bad.csv"), str(tmp_path / "bad.parquet"))
    assert counts["rejected"] == 2 and counts["scored"] == NEW_ROWS - 2
    reasons = pd.read_csv(tmp_path / "bad.rejects.csv")["reason"].tolist()
    assert reasons == ["feature 'Smoker?': expected an integer (got 'yes')",
                       "feature 'Smoker?': expected an integer (got 'tRUE')"]


def test_the_predictor_takes_booleans_and_nulls_the_model_imputes(cancer, tmp_path):
    import tensorflow as tf

    from helpers.predictor import serve_pushed

    from kubetfx.components.bulk_inferrer import executor as bulk_inferrer
    from kubetfx.components.common import tfmd
    from kubetfx.components.predictor import schema_check, table_check
    from kubetfx.components.predictor.schema_check import RequestError

    row = cancer["new"].dropna().iloc[0].to_dict()
    row = {**row, "Smoker?": bool(row["Smoker?"]), "Visit Count": int(row["Visit Count"])}
    servable = bulk_inferrer.load_model(cancer["model"])
    try:  # V2 JSON: booleans for the INT feature (INT64 or BOOL), never for a FLOAT one; the marker is no value
        datatypes = {"Smoker?": "BOOL", "Visit Count": "INT64", "Clinic": "BYTES"}
        body = {"inputs": [{"name": name, "shape": [2], "datatype": datatypes.get(name, "FP32"),
                            "data": [value, value] if name != "Smoker?" else [True, False]}
                           for name, value in row.items()]}
        columns, n = servable.rules.from_v2_json(body)
        assert n == 2 and columns["Smoker?"].tolist() == [1, 0]
        body["inputs"][0]["data"] = [True, 1.0]
        with pytest.raises(RequestError, match="instance 0: feature 'Mean Radius \\(mm\\)': expected a number "
                                               "\\(got true\\)"):
            servable.rules.from_v2_json(body)
        with pytest.raises(RequestError, match="feature 'Visit Count': reserved for a missing value; send null"):
            servable.rules.from_instances([{**row, "Visit Count": feature_values.MISSING_INT64}])
        # Only the feature that was a boolean column in training takes booleans: true for Visit Count is a mistake.
        info = json.load(open(os.path.join(cancer["model"], layout.MODEL_INFO_FILE)))
        assert info["boolean_columns"] == ["Smoker?"]
        with pytest.raises(RequestError,
                           match="^instance 0: feature 'Visit Count': expected an integer \\(got true\\)$"):
            servable.rules.from_instances([{**row, "Visit Count": True}])
        body["inputs"][0]["data"] = [row["Mean Radius (mm)"]] * 2
        visits = next(entry for entry in body["inputs"] if entry["name"] == "Visit Count")
        visits.update(datatype="BOOL", data=[True, False])
        with pytest.raises(RequestError, match="^input 'Visit Count': datatype 'BOOL' does not match the feature type "
                                               "int64; use INT"):
            servable.rules.from_v2_json(body)
        table = pa.table({name: pa.array([str(value)] * 2) for name, value in row.items()})
        table = table.set_column(table.schema.get_field_index("Visit Count"), "Visit Count", pa.array(["True", "3"]))
        _, good, reasons = table_check.check(servable.rules, table.to_batches()[0])
        assert good.tolist() == [False, True]
        assert reasons == {0: "feature 'Visit Count': expected an integer (got 'True')"}
        # A model without the record (older kubetfx, TFRecord input): every INT feature takes booleans, as before.
        unrecorded = schema_check.build(servable.spec.features,
                                        {k: v for k, v in info.items() if k != "boolean_columns"})
        assert unrecorded.from_instances([{**row, "Visit Count": True}])[0]["Visit Count"].tolist() == [1]
        # A model whose kubetfx_model.json has no `missing` key (exported before markers): nulls refused, as ever.
        older = schema_check.build(servable.spec.features, {**info, "raw_features": [
            {k: v for k, v in entry.items() if k != "missing"} for entry in info["raw_features"]]})
        for name, why in (("Visit Count", "expected an integer"), ("Clinic", "expected a string")):
            with pytest.raises(RequestError, match=f"^instance 0: feature '{name}': {why} \\(got null\\)$"):
                older.from_instances([{**row, name: None}])
    finally:
        servable.close()

    server = serve_pushed(cancer["model"], tmp_path, "cancer", schema=tfmd.schema_path(cancer["schema"]))
    try:
        server.wait_ready()
        instances = [row, {**row, "Smoker?": int(row["Smoker?"])},                      # true == 1
                     {**row, "Smoker?": not row["Smoker?"]}, {**row, "Smoker?": int(not row["Smoker?"])},
                     {**row, "Visit Count": None}, {**row, "Visit Count": _median(cancer)},  # null == imputed
                     {**row, "Visit Count": 0},
                     {**row, "Clinic": None}]
        status, answer = server.predict(instances)
        assert status == 200, answer
        probabilities = [list(p["probabilities"].values()) for p in answer["predictions"]]
        np.testing.assert_allclose(probabilities[0], probabilities[1], rtol=1e-6)
        np.testing.assert_allclose(probabilities[2], probabilities[3], rtol=1e-6)
        np.testing.assert_allclose(probabilities[4], probabilities[5], rtol=1e-6)
        assert not np.allclose(probabilities[4], probabilities[6], rtol=1e-4)  # not 0
        # A null Clinic is imputed as a tf.Example without it is (the token Transform fills in).
        model = tf.saved_model.load(os.path.join(cancer["model"], layout.SERVING_MODEL_DIR))
        features = {k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) if isinstance(v, float) else
                    tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)])) if isinstance(v, (bool, int)) else
                    tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
                    for k, v in row.items() if k != "Clinic"}
        record = tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
        expected = model.signatures["serving_default"](examples=tf.constant([record]))["probabilities"].numpy()[0]
        np.testing.assert_allclose(probabilities[7], expected, rtol=1e-5, atol=1e-6)

        for change, message in (
                ({"Smoker?": "yes"}, "instance 0: feature 'Smoker?': expected an integer (got 'yes')"),
                ({"Smoker?": None}, "instance 0: feature 'Smoker?': expected an integer (got null)"),
                ({"Mean Texture": None},
                 "instance 0: feature 'Mean Texture': null (NaN) is not allowed for this feature (got null)")):
            status, answer = server.predict([{**row, **change}])
            assert (status, answer["error"]) == (400, message)
    finally:
        server.stop()


def test_a_csv_scores_with_the_missing_value_fields_its_training_csv_was_read_with(tmp_path_factory, tmp_path):
    """A team's CSVs write a missing cell as -999 and ExampleGen was told so (null_values, string_null_values):
    the model records those fields, and the BulkInferrer reads -999 in new data as missing (imputed by the model, as
    in training), so the rows score as their blank-cell copies do. A model without the record (kubetfx_model.json
    of an older kubetfx) reads -999 as a number: the rows score differently, which is why it is recorded."""
    from kubetfx.components.bulk_inferrer import executor as bulk_inferrer

    marked = _cancer_pipeline(tmp_path_factory.mktemp("cancer-999"), na_rep="-999",
                              null_values=",NA,-999", string_null_values=",-999")
    info_path = os.path.join(marked["model"], layout.MODEL_INFO_FILE)
    info = json.load(open(info_path, encoding="utf-8"))
    assert info["null_values"] == ["", "NA", "-999"] and info["string_null_values"] == ["", "-999"]
    new = marked["new"]
    assert new["Mean Radius (mm)"].isna().any() and new["Visit Count"].isna().any() and new["Clinic"].isna().any()
    new.to_csv(tmp_path / "blank.csv", index=False)
    new.to_csv(tmp_path / "marked.csv", index=False, na_rep="-999")

    def score(model_dir: str, name: str):
        counts = bulk_inferrer.predict_to_file(model_dir, str(tmp_path / f"{name}.csv"),
                                               str(tmp_path / f"{name}-{os.path.basename(model_dir)}.parquet"))
        return counts, _probabilities(pq.read_table(counts["table"]))

    (blank_counts, blank), (marked_counts, scored) = score(marked["model"], "blank"), score(marked["model"], "marked")
    assert blank_counts["scored"] == marked_counts["scored"] == NEW_ROWS
    np.testing.assert_array_equal(scored, blank)

    older = str(tmp_path / "older")
    shutil.copytree(marked["model"], older)
    json.dump({k: v for k, v in info.items() if k not in feature_values.NULL_TEXT_KEYS}, open(
        os.path.join(older, layout.MODEL_INFO_FILE), "w", encoding="utf-8"))
    counts, _ = score(older, "marked")
    # -999 in a text cell is no clinic the model knows: refused; in a number cell, taken as a number.
    assert counts["reject_reasons"] == {"value not in the training domain": int(new["Clinic"].isna().sum())}
    kept = ~new["Clinic"].isna().to_numpy()
    numbers_marked = (new["Mean Radius (mm)"].isna() | new["Visit Count"].isna()).to_numpy()[kept]
    _, older_scored = counts, _probabilities(pq.read_table(counts["table"]))
    assert numbers_marked.any()
    assert not np.allclose(older_scored[numbers_marked], blank[kept][numbers_marked])
    np.testing.assert_array_equal(older_scored[~numbers_marked], blank[kept][~numbers_marked])
