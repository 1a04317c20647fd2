"""The Markdown report of an Evaluator run (shown in the KFP UI)."""

from __future__ import annotations

from kubetfx.components.common import report
from kubetfx.components.evaluator.results import OVERALL

_NO_SKILL_FOR = {  # TFMA metric name -> no-skill key
    "sparse_categorical_accuracy": "accuracy", "accuracy": "accuracy", "categorical_accuracy": "accuracy",
    "mean_squared_error": "mean_squared_error", "mse": "mean_squared_error",
    "mean_absolute_error": "mean_absolute_error", "mae": "mean_absolute_error",
}


def _delta(values: dict) -> str:
    diff = values.get("diff")
    return "–" if diff is None else f"{diff:+.4g}"


def engine_line(info: dict) -> str:
    """Which engine computed the metrics and, for TFMA, why the fast path did not."""
    if info.get("engine") == "fast":
        return "fast path (one batch-inference pass per model, TFMA's metric definitions and output format)"
    reasons = info.get("engine_reasons") or []
    return "TFMA path: " + ("; ".join(reasons) if reasons else "TFMA")


def render(info: dict) -> str:
    blessed = info["blessed"]
    lines = ["# Evaluator", "",
             f"**Decision: {'BLESSED' if blessed else 'NOT BLESSED'}** — "
             f"{'the Pusher may push this model' if blessed else 'the Pusher will not push this model'}.", ""]
    lines += [f"- {reason}" for reason in info["reasons"]] + [""]

    lines += ["## Baseline", ""]
    if info.get("baseline_version") is not None:
        lines += [f"Version **{info['baseline_version']}** of `{info['model_name']}` in the model repository "
                  f"(`{info['baseline_path']}`): change thresholds compare the candidate with it.", ""]
    else:
        where = (f"`{info['baseline_repository']}` has no version of `{info['model_name']}`"
                 if info.get("baseline_repository") else "no model repository was given")
        lines += [f"None: {where}. **Rubber stamp** (TFX semantics): "
                  f"{info.get('skipped_change_thresholds', 0)} change threshold(s) skipped; value thresholds "
                  "still apply.", ""]

    slices = info["slices"]
    overall = next((s for s in slices if s["slice"] == OVERALL), None)
    no_skill = info.get("no_skill") or {}
    if overall:
        rows = []
        for name, values in sorted(overall["metrics"].items()):
            rows.append([name, report.fmt(values.get("candidate")), report.fmt(values.get("baseline")),
                         _delta(values), report.fmt(no_skill.get(_NO_SKILL_FOR.get(name, ""), None))])
        lines += [f"## Overall metrics ({info['split']} split, {report.fmt(info.get('eval_examples'))} examples)", "",
                  report.table(["metric", "candidate", "baseline", "change", "no-skill"], rows), ""]
        if no_skill:
            lines += [f"No-skill: {no_skill.get('description', '')}", ""]

    checks = info.get("checks") or []
    lines += ["## Thresholds", ""]
    if checks:
        rows = [[c["slice"], c["metric"], c["kind"], c["rule"], report.fmt(c["value"]), report.fmt(c["baseline"]),
                 "–" if c["diff"] is None else f"{c['diff']:+.4g}", "pass" if c["passed"] else "**FAIL**"]
                for c in checks]
        lines += [report.table(["slice", "metric", "threshold", "must be", "candidate", "baseline", "change",
                                "result"], rows), ""]
    else:
        lines += ["No thresholds were checked.", ""]

    others = [s for s in slices if s["slice"] != OVERALL]
    if others:
        names = sorted({name for s in slices for name in s["metrics"]})
        rows = []
        for result in others:
            for name in names:
                values = result["metrics"].get(name)
                if values:
                    rows.append([result["slice"], name, report.fmt(values.get("candidate")),
                                 report.fmt(values.get("baseline")), _delta(values)])
        lines += ["## Metrics per slice", "", report.table(["slice", "metric", "candidate", "baseline", "change"],
                                                           rows), ""]

    matrix = info.get("confusion_matrix")
    if matrix:
        categories = matrix["categories"]
        rows = [[f"**{categories[i]}**"] + [report.fmt(v) for v in row] for i, row in enumerate(matrix["matrix"])]
        lines += ["## Confusion matrix (candidate, Overall; rows: actual, columns: predicted)", "",
                  report.table(["actual \\ predicted"] + categories, rows), ""]

    lines += ["## Models", "", report.table(["", ""], [
        ["candidate", f"`{info['candidate_path']}`"],
        ["baseline", f"`{info['baseline_path']}`" if info.get("baseline_path") else "none"],
        ["examples", f"`{info['data_location']}`"],
        ["engine", engine_line(info)],
        ["analysis", f"{info['analysis_seconds']:.1f} s"]]), ""]
    if info.get("config_notes"):
        lines += [f"- {note}" for note in info["config_notes"]] + [""]
    lines += ["## EvalConfig used", "", "```", info["eval_config"].rstrip(), "```", ""]
    return "\n".join(lines)
