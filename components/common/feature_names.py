"""Safe TensorFlow names for any column name: one mapping, used wherever TensorFlow needs a name.

Columns keep the names the user's data gives them — in the examples, statistics, schema,
transform graph, reports and prediction requests ("sepal length (cm)", "Total.Phenols",
"größe"). TensorFlow signature arguments must be Python identifiers (TF renames others itself, and
rejects keywords) and Keras layer names cannot hold "/", so those places (the built-in model's inputs, the
``serving_raw`` signature, analyzer scopes and vocabulary files) use :func:`safe_name` of the
column, and ``kubetfx_model.json`` records the pair so the predictor maps a request's
original names onto the signature. ExampleGen checks with :func:`safe_names` that no two
columns of a dataset collide.
"""

import hashlib
import keyword
import re
import unicodedata

from kubetfx.components.common.errors import InputDataError

_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")
_REPEATED = re.compile(r"_{2,}")


def safe_name(name: str) -> str:
    """A Python identifier: ``"sepal length (cm)"`` -> ``"sepal_length_cm"``, ``"Total.Phenols"`` ->
    ``"Total_Phenols"``, ``"größe"`` -> ``"groe"``, ``"1st"`` -> ``"f_1st"``. A pure function, so every
    component derives the same name without passing a mapping around."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    safe = _REPEATED.sub("_", _UNSAFE.sub("_", ascii_name)).strip("_")
    if not safe:  # nothing readable left (e.g. "年齢"): a stable hash instead
        return "f_" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    if not safe[0].isalpha():
        safe = f"f_{safe}"
    return f"{safe}_" if keyword.iskeyword(safe) else safe


def safe_names(columns: list[str], where: str = "the input") -> dict[str, str]:
    """Original -> safe name for every column; an error naming both columns when two would collide."""
    mapping, taken = {}, {}
    for column in columns:
        safe = safe_name(column)
        if safe in taken and taken[safe] != column:
            raise InputDataError(f"columns '{taken[safe]}' and '{column}' of {where} both become '{safe}' where "
                                 "TensorFlow needs a name (letters, digits, '_', '.', '-'); rename one of them")
        taken[safe] = column
        mapping[column] = safe
    return mapping
