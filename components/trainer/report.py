"""The Markdown report of a Trainer run (shown in the KFP UI)."""

from __future__ import annotations

from kubetfx.components.common import report


def _tensors(mapping: dict) -> str:
    return ", ".join(f"`{name}` {info['dtype']} {info['shape']}" for name, info in mapping.items()) or "–"


def _hyperparameters(info: dict) -> list[str]:
    """The values trained with; for the built-in trainer where each came from and the schedule they made."""
    schedule = info.get("schedule") or {}
    sources = schedule.get("sources") or {}
    if not sources:
        return [report.table(["name", "value"], [[k, str(v)] for k, v in info["hyperparameters"].items()]), ""]
    rows = [[k, str(v), sources.get(k, "–")] for k, v in info["hyperparameters"].items()]
    return [report.table(["name", "value", "from"], rows), "",
            f"Schedule: {report.fmt(schedule.get('steps_per_epoch'))} steps an epoch, at most "
            f"{report.fmt(schedule.get('total_steps'))} training steps, {report.fmt(schedule.get('validation_steps'))} "
            f"validation steps an epoch. `scaled`: a default scaled to the {report.fmt(info.get('train_examples'))} "
            "train examples (`kubetfx params` shows the rule); `given`: set by `hyperparameters`; `tuner`: found by "
            "the Tuner.", ""]


def render(info: dict) -> str:
    kind = info.get("problem_type")
    source = (f"module `{info['module_file']}`, function `{info['run_fn']}`" if info.get("module_file")
              else "the built-in Keras 3 DNN")
    lines = ["# Trainer", "", f"**Trained by** {source}; label `{info.get('label') or '–'}`, problem: {kind}.", ""]
    if info.get("class_names"):
        lines += [f"**Classes** (output order): {', '.join('`' + c + '`' for c in info['class_names'])}", ""]
    facts = [["train examples", report.fmt(info.get("train_examples"))],
             ["eval examples", report.fmt(info.get("eval_examples"))],
             ["epochs run", report.fmt(info.get("epochs_run"))],
             ["best epoch (restored)", report.fmt(info.get("best_epoch"))],
             ["training examples/second", report.fmt(info.get("examples_per_second"))],
             ["trained from", info.get("training_input") or "–"],
             ["devices", ", ".join(info.get("devices") or []) or "–"],
             ["seed", report.fmt(info.get("seed"))]]
    lines += ["## Run", "", report.table(["", "value"], [r for r in facts if r[1] not in ("–", "")]), ""]
    if info.get("metrics"):
        lines += ["## Metrics", "", report.table(["metric", "value"], [[k, report.fmt(float(v))] for k, v in
                                                                      sorted(info["metrics"].items())]), ""]
    if info.get("hyperparameters"):
        lines += ["## Hyperparameters", ""] + _hyperparameters(info)
    if info.get("tuning"):
        tuning = info["tuning"]
        best = tuning.get("best_trial") or {}
        lines += ["## Tuned", "", f"Values from the Tuner's best trial {best.get('number', '–')} "
                  f"({tuning.get('objective')} {report.fmt(best.get('objective'))}; {tuning.get('library')}, seed "
                  f"{tuning.get('seed')}): " + ", ".join(f"`{k}={v}`" for k, v in (tuning.get("values") or {}).items()),
                  ""]
    lines += ["## Serving signatures", "", report.table(
        ["signature", "inputs", "outputs"],
        [[f"`{name}`", _tensors(sig["inputs"]), _tensors(sig["outputs"])]
         for name, sig in (info.get("signatures") or {}).items()]), ""]
    return "\n".join(lines)
