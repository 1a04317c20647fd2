"""What a Transform run produced, read back from the written transform graph, and its report.

Vocabularies come from ``transform_fn/assets``, z-score means/variances and
imputation values from the analyzer constants saved in ``transform_fn`` (see
analyzer_constants.py), feature types from the transformed metadata.
"""

from __future__ import annotations

import math
import os

from kubetfx.components.common import layout, report
from kubetfx.components.transform import analyzer_constants, default_preprocessing

FIRST_ENTRIES = 10
_REPORT_VOCAB_ENTRIES = 8


def _feature_kind(spec) -> tuple[str, str]:
    """(dtype name, shape/kind text) of a TF feature spec."""
    dtype = spec.dtype.name
    kind = type(spec).__name__
    if kind == "FixedLenFeature":
        return dtype, "[" + ", ".join(str(d) for d in spec.shape) + "]"
    return dtype, {"VarLenFeature": "VarLen", "SparseFeature": "Sparse", "RaggedFeature": "Ragged"}.get(kind, kind)


def _vocabulary(path: str) -> tuple[int, list[str]]:
    """Size and first entries of a vocabulary file (one entry per line)."""
    size, first = 0, []
    with open(path, "rb") as handle:
        for line in handle:
            if size < FIRST_ENTRIES:
                first.append(line.rstrip(b"\n").decode("utf-8", "replace"))
            size += 1
    return size, first


def vocabularies(transform_graph_dir: str) -> dict[str, dict]:
    """Vocabulary file name -> {"size", "first"} for every file in transform_fn/assets."""
    assets = _assets_dir(transform_graph_dir)
    result = {}
    if os.path.isdir(assets):
        for name in sorted(os.listdir(assets)):
            path = os.path.join(assets, name)
            if os.path.isfile(path):
                size, first = _vocabulary(path)
                result[name] = {"size": size, "first": first}
    return result


def _assets_dir(transform_graph_dir: str) -> str:
    return os.path.join(transform_graph_dir, layout.TRANSFORM_FN_DIR, "assets")


def _vocabulary_contains(path: str, token: str) -> bool:
    wanted = token.encode("utf-8")
    with open(path, "rb") as handle:
        return any(line.rstrip(b"\n") == wanted for line in handle)


def imputations(transform_graph_dir: str, plan: dict | None, constants: dict) -> dict[str, dict]:
    """Feature -> {"strategy", "value"} the built-in graph fills in where the feature is missing.

    Numbers: the analyzer's mean/median from ``constants`` (analyzer_constants.read; None if not
    found); strings: the missing token and ``in_vocabulary`` (False: it maps to the OOV bucket).
    """
    if not plan:
        return {}
    result = {}
    for name, step in plan.items():
        impute = step.get("impute")
        if not impute:
            continue
        if "scope" in impute:
            result[name] = {"strategy": impute["strategy"],
                            "value": analyzer_constants.imputation_value(constants, impute["scope"])}
        else:
            vocabulary = os.path.join(_assets_dir(transform_graph_dir), step["vocabulary"])
            result[name] = {"strategy": impute["strategy"], "value": impute["value"],
                            "in_vocabulary": os.path.isfile(vocabulary)
                            and _vocabulary_contains(vocabulary, impute["value"])}
    return result


def z_scores(plan: dict | None, constants: dict) -> dict[str, dict]:
    """Feature (default preprocessing) or name scope (user module) -> {"mean", "variance", "std"},
    from the analyzer ``constants`` (analyzer_constants.read)."""
    if plan is not None:
        scopes = {name: step["scope"] for name, step in plan.items() if step.get("scope")}
    else:
        scopes = {scope: scope for scope in analyzer_constants.z_score_scopes(constants)}
    result = {}
    for name, scope in scopes.items():
        found = analyzer_constants.z_score_parameters(constants, scope)
        if found is not None:
            mean, variance = found
            result[name] = {"mean": mean, "variance": variance, "std": math.sqrt(max(variance, 0.0))}
    return result


def transformed_features(transform_graph_dir: str) -> dict[str, dict]:
    import tensorflow_transform as tft

    spec = tft.TFTransformOutput(transform_graph_dir).transformed_feature_spec()
    result = {}
    for name in sorted(spec):
        dtype, shape = _feature_kind(spec[name])
        result[name] = {"dtype": dtype, "shape": shape}
    return result


def _imputation_report(imputation: dict[str, dict]) -> list[str]:
    lines = ["## Missing values (imputed in the graph, also at serving)", ""]
    if not imputation:
        return lines + ["No feature may be missing (the schema gives every feature a fixed shape), or a module "
                        "file's preprocessing_fn handles them.", ""]
    rows = []
    for name, info in imputation.items():
        if info["strategy"] == default_preprocessing.MISSING_TOKEN_STRATEGY:
            value = f"`{info['value']}`"
            how = ("its own vocabulary entry" if info.get("in_vocabulary")
                   else "the OOV bucket (no train row lacked it)")
        else:
            value = report.fmt(info["value"])
            how = f"{info['strategy']} of the analyzed values"
        rows.append([f"`{name}`", info["strategy"], value, how])
    return lines + [report.table(["feature", "strategy", "value filled in", "meaning"], rows), ""]


def _materialized_line(materialized: bool) -> str:
    if materialized:
        return "**Transformed examples**: written for every split (`materialize=True`)."
    return ("**Transformed examples**: not written (`materialize=False`): the Trainer parses the raw examples and "
            "applies this transform graph in its input pipeline.")


def render(metadata: dict, vocabs: dict[str, dict]) -> str:
    """The Markdown report of a Transform run."""
    counts = metadata["row_counts"]
    source = (f"module `{metadata['module_file']}`, function `{metadata['preprocessing_fn']}`"
              if metadata["module_file"] else "the built-in preprocessing_fn (derived from the schema)")
    lines = ["# Transform", "",
             f"**preprocessing_fn**: {source}. Analyzed on split(s) "
             f"{', '.join('`' + s + '`' for s in metadata['analyzed_splits'])}.", "",
             _materialized_line(metadata.get("materialized", True)), "",
             "## Rows per split", "",
             report.table(["split", "rows"], [[s, report.fmt(n)] for s, n in counts.items()]), "",
             "## Transformed features", ""]
    transforms = metadata.get("transforms") or {}
    origin = {out: raw for raw, out in (metadata.get("feature_mapping") or {}).items()}
    rows = []
    for name, info in metadata["transformed_features"].items():
        raw = origin.get(name)
        how = transforms.get(raw, "") if raw else ""
        rows.append([f"`{name}`", info["dtype"], info["shape"], f"`{raw}`" if raw else "–", how or "–"])
    lines += [report.table(["feature", "dtype", "shape", "from raw", "transform"], rows), ""]
    if metadata.get("label_column"):
        label = f"**Label**: `{metadata['label_column']}`"
        if metadata.get("transformed_label"):
            label += f" → `{metadata['transformed_label']}`"
        if metadata.get("label_vocabulary"):
            label += f" (vocabulary `{metadata['label_vocabulary']}`: index = position in the file)"
        lines += [label, ""]
    lines += ["## Z-scores (analyzer results)", ""]
    z = metadata.get("z_scores") or {}
    if z:
        lines += [report.table(["feature", "mean", "std", "variance"],
                               [[f"`{n}`", report.fmt(v["mean"]), report.fmt(v["std"]), report.fmt(v["variance"])]
                                for n, v in z.items()]), ""]
    else:
        lines += ["No `scale_to_z_score` analyzer found in the transform graph.", ""]
    lines += _imputation_report(metadata.get("imputation") or {})
    lines += ["## Vocabularies", ""]
    if vocabs:
        rows = []
        for name, info in vocabs.items():
            shown = ", ".join(f"`{v}`" for v in info["first"][:_REPORT_VOCAB_ENTRIES])
            more = ", …" if info["size"] > _REPORT_VOCAB_ENTRIES else ""
            rows.append([f"`{name}`", report.fmt(info["size"]), shown + more])
        lines += [report.table(["vocabulary", "size", "entries (most frequent first)"], rows), ""]
    else:
        lines += ["No vocabulary was computed.", ""]
    return "\n".join(lines)
