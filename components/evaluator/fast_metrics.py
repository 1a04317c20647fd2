"""TFMA's standard metrics in numpy, per slice, from one model's labels and predictions.

Each metric reproduces TFMA 0.52's definition for an unweighted, single-output model
(``metrics/*.py`` and the tf_keras metrics TFMA wraps), including its arithmetic
where that changes the value beyond float noise:

* tf_keras ``SparseCategoricalAccuracy``: float32 ``correct / count``;
  ``SparseCategoricalCrossentropy``: per example ``-log`` of the probabilities clipped to
  [1e-7, 1 - 1e-7] and renormalized, computed with the same TensorFlow ops in
  float32 (confident models have losses near float32 resolution), averaged;
* TFMA's ``MeanSquaredError`` / ``MeanAbsoluteError`` / ``MeanLabel`` / ``MeanPrediction`` /
  ``Calibration``: over TFMA's "flattened" (label, prediction) pairs — a K-class
  prediction pairs each class probability with the one-hot label — with its
  dtypes (``|label - prediction|`` in the promoted dtype, errors squared in float64);
* ``MultiClassConfusionMatrixPlot`` at TFMA's default threshold 0.0: the argmax class,
  or -1 when the top prediction is <= 0;
* TFMA's binary confusion-matrix metrics on the same pairs (or on one class with
  ``binarize { class_ids }``), labels in [0, 1] split into positive / negative weight
  as TFMA's "fractional labels": ``Precision``, ``Recall``, ``BinaryAccuracy`` at the
  default threshold 0.5 (positive: prediction > 0.5); ``AUC`` (ROC) and
  ``AUCPrecisionRecall`` from TFMA's 10,000-bucket calibration histogram rebinned to
  its 10,000 interpolated thresholds, then its Riemann sum — the same approximation,
  so the same value, not the exact AUC.

Per-example terms are computed once per model; a slice sums them over its rows.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from kubetfx.components.common.errors import InputDataError

KERAS_EPSILON = 1e-7
NO_PREDICTED_CLASS_ID = -1

# EvalConfig class_name -> the metric name TFMA writes.
METRIC_NAMES = {
    "ExampleCount": "example_count",
    "WeightedExampleCount": "weighted_example_count",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "MeanSquaredError": "mean_squared_error",
    "MeanAbsoluteError": "mean_absolute_error",
    "MeanLabel": "mean_label",
    "MeanPrediction": "mean_prediction",
    "Calibration": "calibration",
}
BINARY_METRIC_NAMES = {"AUC": "auc", "AUCPrecisionRecall": "auc_precision_recall", "Precision": "precision",
                       "Recall": "recall", "BinaryAccuracy": "binary_accuracy"}
METRIC_NAMES.update(BINARY_METRIC_NAMES)
PLOT_NAMES = {"MultiClassConfusionMatrixPlot": "multi_class_confusion_matrix_plot"}
NEEDS_CLASS_PROBABILITIES = {"SparseCategoricalAccuracy", "SparseCategoricalCrossentropy",
                             "MultiClassConfusionMatrixPlot"}
DEFAULT_THRESHOLD = 0.5           # TFMA's ConfusionMatrixMetric default
NUM_THRESHOLDS = 10000            # TFMA's DEFAULT_NUM_THRESHOLDS = calibration_histogram.DEFAULT_NUM_BUCKETS
NUM_BUCKETS = 10000
EPSILON = 1e-7                    # binary_confusion_matrices._EPSILON


class Unsupported(Exception):
    """What the data shows the fast path cannot compute as TFMA would (the executor then runs TFMA)."""

    def __init__(self, reasons: list[str]):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def _auc_thresholds() -> np.ndarray:
    """TFMA's interpolated thresholds, shifted by epsilon as its rebinning does."""
    inner = np.arange(1, NUM_THRESHOLDS - 1) * 1.0 / (NUM_THRESHOLDS - 1)
    thresholds = np.concatenate([[-EPSILON], inner, [1.0 + EPSILON]])
    return np.where(thresholds != 0, thresholds + EPSILON, thresholds)


class BinaryPairs:
    """(label, prediction) pairs for binary metrics: labels in [0, 1], split into positive / negative weight."""

    def __init__(self, labels: np.ndarray, predictions: np.ndarray, what: str):
        labels = labels.astype(np.float64)
        if ((labels < 0) | (labels > 1)).any():
            raise Unsupported([f"binary metrics on {what}, whose labels are not all in [0, 1] (TFMA rejects them)"])
        self.positive = labels
        self.negative = 1.0 - labels
        self.predictions = predictions.astype(np.float64)

    @functools.cached_property
    def counts(self) -> dict[str, np.ndarray]:
        """Per example: TP/FP/FN/TN weight at threshold 0.5 (positive: prediction > threshold)."""
        above = self.predictions > DEFAULT_THRESHOLD
        return {"tp": np.where(above, self.positive, 0.0).sum(axis=1),
                "fp": np.where(above, self.negative, 0.0).sum(axis=1),
                "fn": np.where(above, 0.0, self.positive).sum(axis=1),
                "tn": np.where(above, 0.0, self.negative).sum(axis=1)}

    @functools.cached_property
    def auc_bucket(self) -> np.ndarray:
        """Per pair, the rebinned histogram bucket (threshold index) TFMA puts the prediction in."""
        index = self.predictions * NUM_BUCKETS + 1  # calibration_histogram._bucket_index, left 0, right 1
        bucket = np.clip(np.floor(np.where(index < 0, 0, index)), 0, NUM_BUCKETS + 1)
        lower = np.where(bucket == 0, -np.inf,
                         np.where(bucket >= NUM_BUCKETS + 1, np.inf, (bucket - 1) / NUM_BUCKETS * 1.0 + 0.0))
        return np.searchsorted(_auc_thresholds()[1:], lower, side="right")

    def confusion_at_thresholds(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """TP, TN, FP, FN at TFMA's 10,000 thresholds (``_histogram_to_binary_confusion_matrices``)."""
        buckets = self.auc_bucket[rows].ravel()
        positive = np.bincount(buckets, weights=self.positive[rows].ravel(), minlength=NUM_THRESHOLDS)
        negative = np.bincount(buckets, weights=self.negative[rows].ravel(), minlength=NUM_THRESHOLDS)
        tp, fp = np.cumsum(positive[::-1])[::-1], np.cumsum(negative[::-1])[::-1]
        fn = np.concatenate([[0.0], np.cumsum(positive)[:-1]])
        tn = np.concatenate([[0.0], np.cumsum(negative)[:-1]])
        tp[-1], fp[-1], fn[-1], tn[-1] = 0.0, 0.0, tp[0], fp[0]  # the last threshold is 1 + epsilon
        return tp, tn, fp, fn


def _auc(tp, tn, fp, fn, curve: str) -> float:
    """TFMA's ``AUC._metric_value`` with summation_method interpolation."""
    n = len(tp)
    if curve == "PR":
        dtp = tp[: n - 1] - tp[1:]
        p = tp + fp
        dp = p[: n - 1] - p[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            prec_slope = dtp / np.maximum(dp, 0)
            intercept = tp[1:] - prec_slope * p[1:]
            safe_p_ratio = np.divide(p[: n - 1], p[1:], out=np.ones_like(p[1:]), where=p[1:] != 0)
            increment = prec_slope * (dtp + intercept * np.log(safe_p_ratio)) / np.maximum(tp[1:] + fn[1:], 0)
        return float(np.nansum(increment))
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) != 0)
    fp_rate = np.divide(fp, fp + tn, out=np.zeros_like(fp), where=(fp + tn) != 0)
    heights = (recall[: n - 1] + recall[1:]) / 2.0
    return float(np.nansum((fp_rate[: n - 1] - fp_rate[1:]) * heights))


def _positive_ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


class ModelValues:
    """One model's per-example terms: labels [N], predictions [N] or [N, K] (as the model outputs them)."""

    def __init__(self, labels: np.ndarray, predictions: np.ndarray, what: str):
        self.labels = labels
        self.predictions = predictions
        self.what = what
        self._binary: dict[int | None, BinaryPairs] = {}

    def binary(self, class_id: int | None) -> BinaryPairs:
        """The pairs a binary metric sees: all flattened pairs, or one class (``binarize { class_ids }``)."""
        if class_id not in self._binary:
            labels, predictions = self._pairs
            if class_id is not None:
                if not 0 <= class_id < predictions.shape[1] or predictions.shape[1] == 1:
                    raise Unsupported([f"binarize class_id {class_id} on the {self.what}, whose predictions have "
                                       f"shape {list(self.predictions.shape)}"])
                labels, predictions = labels[:, class_id:class_id + 1], predictions[:, class_id:class_id + 1]
            self._binary[class_id] = BinaryPairs(labels, predictions, self.what)
        return self._binary[class_id]

    @property
    def num_classes(self) -> int:
        return self.predictions.shape[1] if self.predictions.ndim == 2 else 1

    # ----------------------------------------------------------------- tf_keras metrics

    @functools.cached_property
    def correct(self) -> np.ndarray:
        predicted = np.argmax(self.predictions, axis=-1).astype(self.labels.dtype)
        return (predicted == self.labels).astype(np.int64)

    @functools.cached_property
    def crossentropy(self) -> np.ndarray:
        import tensorflow as tf

        labels = self.labels.astype(np.int64)
        bad = (labels < 0) | (labels >= self.num_classes)
        if bad.any():
            raise InputDataError(f"{self.what}: label value {labels[bad][0]} is not a class id in [0, "
                                 f"{self.num_classes}) of the model's {self.num_classes} outputs; "
                                 "SparseCategoricalCrossentropy needs class ids")
        probabilities = tf.constant(self.predictions, dtype=tf.float32)
        epsilon = tf.constant(KERAS_EPSILON, dtype=tf.float32)
        logits = tf.math.log(tf.clip_by_value(probabilities, epsilon, 1 - epsilon))
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.constant(labels), logits=logits)
        return losses.numpy().astype(np.float64)

    # ----------------------------------------------------------------- TFMA's flattened pairs

    @functools.cached_property
    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels, predictions) as [N, M] pairs: M = 1, or K with one-hot labels (TFMA's flatten)."""
        predictions = self.predictions.reshape(len(self.predictions), -1)
        if predictions.shape[1] == 1:
            return self.labels.reshape(-1, 1), predictions
        ids = self.labels.astype(int)
        if ((ids < -1) | (ids > predictions.shape[1])).any():  # -1 and K become all-zero rows in TFMA too
            raise InputDataError(f"{self.what}: label values must be class ids in [0, {predictions.shape[1]}) "
                                 f"to pair them with the model's {predictions.shape[1]} outputs")
        one_hot = np.delete(np.eye(predictions.shape[1] + 1)[ids], -1, axis=-1)  # -1 -> all zeros, as TFMA
        return one_hot, predictions

    @functools.cached_property
    def pair_count(self) -> np.ndarray:
        return np.full(len(self.labels), self._pairs[1].shape[1], dtype=np.float64)

    @functools.cached_property
    def _differences(self) -> np.ndarray:
        labels, predictions = self._pairs
        return labels - predictions  # numpy promotion = TFMA's (float32 - float32 stays float32)

    @functools.cached_property
    def squared_error(self) -> tuple[np.ndarray, np.ndarray]:
        """Per example: (sum of squared errors, number of non-NaN pairs); TFMA skips NaN errors."""
        diff = self._differences
        errors = np.sqrt(diff * diff).astype(np.float64) ** 2  # np.linalg.norm of one value, then squared
        return self._sum_skipping_nan(errors)

    @functools.cached_property
    def absolute_error(self) -> tuple[np.ndarray, np.ndarray]:
        return self._sum_skipping_nan(np.abs(self._differences).astype(np.float64))

    @staticmethod
    def _sum_skipping_nan(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = ~np.isnan(errors)
        return np.where(valid, errors, 0.0).sum(axis=1), valid.sum(axis=1).astype(np.float64)

    @functools.cached_property
    def label_sum(self) -> np.ndarray:
        return self._pairs[0].astype(np.float64).sum(axis=1)

    @functools.cached_property
    def prediction_sum(self) -> np.ndarray:
        return self._pairs[1].astype(np.float64).sum(axis=1)

    # ----------------------------------------------------------------- confusion matrix

    @functools.cached_property
    def class_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(actual, predicted) class id per example, as TFMA's multi-class confusion matrix counts them."""
        predicted = np.argmax(self.predictions, axis=-1)
        top = np.take_along_axis(self.predictions, predicted[:, None], axis=-1)[:, 0]
        predicted = np.where(top <= 0.0, NO_PREDICTED_CLASS_ID, predicted)
        return np.trunc(self.labels.astype(np.float64)).astype(np.int64), predicted


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if not np.isclose(denominator, 0.0) else math.nan


def metric_value(class_name: str, values: ModelValues, rows: np.ndarray, class_id: int | None = None) -> float:
    """The value of metric ``class_name`` (a METRIC_NAMES key) on the examples ``rows``."""
    if class_name in BINARY_METRIC_NAMES:
        pairs = values.binary(class_id)
        if class_name in ("AUC", "AUCPrecisionRecall"):
            curve = "PR" if class_name == "AUCPrecisionRecall" else "ROC"
            return _auc(*pairs.confusion_at_thresholds(rows), curve=curve)
        tp, fp, fn, tn = (pairs.counts[name][rows].sum() for name in ("tp", "fp", "fn", "tn"))
        if class_name == "Precision":
            return _positive_ratio(tp, tp + fp)
        if class_name == "Recall":
            return _positive_ratio(tp, tp + fn)
        return _positive_ratio(tp + tn, tp + fp + tn + fn)
    if class_name in ("ExampleCount", "WeightedExampleCount"):
        return float(len(rows))
    if class_name == "SparseCategoricalAccuracy":
        return float(np.float32(values.correct[rows].sum()) / np.float32(len(rows)))
    if class_name == "SparseCategoricalCrossentropy":
        return float(values.crossentropy[rows].sum() / len(rows))
    if class_name in ("MeanSquaredError", "MeanAbsoluteError"):
        errors, counts = values.squared_error if class_name == "MeanSquaredError" else values.absolute_error
        total = counts[rows].sum()
        return float(errors[rows].sum() / total) if total != 0.0 else math.nan
    if class_name == "MeanLabel":
        return _ratio(values.label_sum[rows].sum(), values.pair_count[rows].sum())
    if class_name == "MeanPrediction":
        return _ratio(values.prediction_sum[rows].sum(), values.pair_count[rows].sum())
    if class_name == "Calibration":
        return _ratio(values.prediction_sum[rows].sum(), values.label_sum[rows].sum())
    raise KeyError(class_name)


def confusion_entries(values: ModelValues, rows: np.ndarray) -> list[tuple[int, int, float]]:
    """(actual, predicted, count) sorted as TFMA writes them."""
    actual, predicted = values.class_pairs
    actual, predicted = actual[rows], predicted[rows]
    low_actual, low_predicted = int(actual.min()), int(predicted.min())
    width = int(predicted.max()) - low_predicted + 1
    codes = (actual - low_actual) * width + (predicted - low_predicted)  # sorted by (actual, predicted)
    present, counts = np.unique(codes, return_counts=True)
    return [(int(code // width) + low_actual, int(code % width) + low_predicted, float(count))
            for code, count in zip(present, counts)]
