"""Canary analysis: the canary version against the stable one on the same live traffic, decided sequentially.

During a canary rollout the prediction log holds both versions' answers (each record names the
version behind it) to requests split at random, so the two arms see the same traffic. Compared,
each with the always-valid confidence sequence of ``sequential.py`` (oriented so that a positive
difference is good for the canary):

* live quality, when late labels exist (``--labels``, joined on request id and instance):
  accuracy for classification, absolute error for regression -- the primary metric;
* without labels, the prediction distribution: each class's share (regression: the mean
  prediction), at ``alpha`` split over the classes;
* guardrails, labels or not: the error rate (requests turned away or failed) and the latency.

Decision: **rollback** as soon as the canary is surely worse (quality interval below 0, or errors
or latency surely worse by more than their margins); **promote** as soon as it is surely better,
or -- at the test's planned length, where the interval is half a margin wide -- when it is surely
not worse by more than the margin (without labels: when its predictions surely stay within the
prediction margin of the stable version's); else **wait**. The chance of promoting a canary worse
by more than the margin is at most ``alpha`` at whatever look decides. :func:`rollout_decision`
turns the verdict into the Pusher's ``RolloutDecision`` (its promote/rollback patches), which
``rollout.apply_rollout_decision`` applies -- to the InferenceService, or locally to the
predictor's rollout document (``pusher/local_rollout.py``).
"""

from __future__ import annotations

import dataclasses
import html
import math

from kubetfx.components.common.errors import ConfigError
from kubetfx.components.model_monitor import sequential

PROMOTE, ROLLBACK, WAIT = "promote", "rollback", "wait"
TRACE_POINTS = 40


@dataclasses.dataclass(frozen=True)
class CanarySettings:
    """What the environment config's ``canary:`` says (pipelines/configs/<env>.yaml)."""

    alpha: float = 0.05  # the chance of a false promotion (or a false rollback) over the whole rollout
    margin: float = 0.05  # quality loss tolerated: accuracy points, or a share of the stable version's MAE
    error_margin: float = 0.01  # more failed requests tolerated (share of requests)
    latency_margin: float = 0.5  # slower answers tolerated (share of the stable version's mean latency)
    prediction_margin: float = 0.1  # without labels: how far a class share (or the mean prediction, in sds) may move
    min_samples: int = 30  # per version, before any decision (the intervals' normal approximation)

    def __post_init__(self):
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"canary.alpha must be between 0 and 0.5, got {self.alpha}")
        for name in ("margin", "error_margin", "latency_margin", "prediction_margin"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"canary.{name} must be > 0, got {getattr(self, name)}")
        if self.min_samples < 2 or self.min_samples != int(self.min_samples):
            raise ConfigError(f"canary.min_samples must be a whole number >= 2, got {self.min_samples}")
        object.__setattr__(self, "min_samples", int(self.min_samples))  # KFP passes dict values as floats


def _failed(record: dict) -> bool:
    prediction = record.get("prediction")
    return not isinstance(prediction, dict) or "error" in prediction


def _quality(records: list[dict], labels: dict, problem_type: str) -> tuple[list[float], bool]:
    """(per labelled instance: 1/0 correct, or the absolute error; whether higher is better)."""
    values = []
    for record in records:
        label = labels.get((str(record["request_id"]), int(record.get("instance", 0))))
        prediction = record.get("prediction") or {}
        if label is None or _failed(record):
            continue
        if problem_type == "classification" and "class" in prediction:
            values.append(float(str(prediction["class"]) == str(label)))
        elif problem_type == "regression" and "prediction" in prediction:
            values.append(abs(float(prediction["prediction"]) - float(label)))
    return values, problem_type == "classification"


def _latencies(records: list[dict]) -> list[float]:
    seen = {}
    for record in records:
        if record.get("latency_ms") is not None:
            seen.setdefault(record["request_id"], float(record["latency_ms"]))
    return list(seen.values())


def _row(metric: str, stable: sequential.Arm, canary: sequential.Arm, interval: sequential.Interval, note: str,
         scale: float = 1.0) -> dict:
    def number(value):
        return None if value is None or not math.isfinite(value) else round(value * scale, 6)

    return {"metric": metric, "stable_n": stable.n, "stable": number(stable.mean), "canary_n": canary.n,
            "canary": number(canary.mean), "difference": number(interval.estimate), "low": number(interval.low),
            "high": number(interval.high), "mixture_ratio": number(min(interval.mixture_ratio, 1e12)), "verdict": note}


def evaluate(records: list[dict], stable: str, canary: str, labels: dict | None, problem_type: str,
             settings: CanarySettings, skew: dict | None = None) -> dict:
    """The canary verdict on ``records`` (both versions' answers, time order) and the evidence behind it."""
    arms = {version: [r for r in records if str(r.get("model_version")) == version] for version in (stable, canary)}
    s, c, alpha = arms[stable], arms[canary], settings.alpha
    result = {"stable": stable, "canary": canary, "alpha": alpha, "margin": settings.margin,
              "samples": {"stable": len(s), "canary": len(c)}, "evidence": [], "trace": [], "planned_samples": None,
              "labelled": False, "skew": skew or {}}

    def verdict(action: str, reason: str) -> dict:
        return {**result, "action": action, "reason": reason}

    # Guardrails: the error rate and the latency (lower is better: an interval below -margin is surely worse).
    errors = [sequential.Arm.of([float(_failed(r)) for r in arm], bernoulli=True) for arm in (s, c)]
    error_iv = sequential.compare(*errors, alpha, settings.error_margin, higher_is_better=False)
    result["evidence"].append(_row("error rate", *errors, error_iv, f"rollback below -{settings.error_margin:g}"))
    latency = [sequential.Arm.of(_latencies(arm)) for arm in (s, c)]
    latency_margin = settings.latency_margin * latency[0].mean if latency[0].n else math.nan
    latency_iv = sequential.compare(*latency, alpha, latency_margin if latency_margin > 0 else 1.0,
                                    higher_is_better=False)
    result["evidence"].append(_row("latency (ms per request)", *latency, latency_iv,
                                   f"rollback below -{latency_margin:.3g} ms" if latency[0].n else "not logged"))
    quality, higher_is_better = _quality(s, labels or {}, problem_type)
    canary_quality, _ = _quality(c, labels or {}, problem_type)
    if len(quality) >= 2 and len(canary_quality) >= 2:
        return _labelled(result, verdict, (quality, canary_quality), higher_is_better, settings, error_iv,
                         latency_iv, latency_margin)
    return _unlabelled(result, verdict, s, c, problem_type, settings, error_iv, latency_iv, latency_margin)


def _too_early(result, verdict, count: int, settings, what: str):
    if count < settings.min_samples:
        return verdict(WAIT, f"{count} {what} per version so far; at least {settings.min_samples} before any decision")
    return None


def _guardrails(verdict, settings, error_iv, latency_iv, latency_margin):
    if error_iv.high < -settings.error_margin:
        return verdict(ROLLBACK, f"the canary fails more requests: error rate higher by {-error_iv.estimate:.3f} "
                                 f"(always-valid interval [{-error_iv.high:.3f}, {-error_iv.low:.3f}])")
    if math.isfinite(latency_margin) and latency_iv.high < -latency_margin:
        return verdict(ROLLBACK, f"the canary is slower by {-latency_iv.estimate:.3g} ms per request (interval "
                                 f"[{-latency_iv.high:.3g}, {-latency_iv.low:.3g}] ms, margin {latency_margin:.3g} ms)")
    return None


def _labelled(result, verdict, values, higher_is_better, settings, error_iv, latency_iv, latency_margin):
    stable_arm, canary_arm = (sequential.Arm.of(v, bernoulli=higher_is_better) for v in values)
    name = "accuracy" if higher_is_better else "absolute error"
    margin = settings.margin if higher_is_better else settings.margin * max(stable_arm.mean, 1e-9)
    interval = sequential.compare(stable_arm, canary_arm, settings.alpha, margin, higher_is_better)
    pooled = sequential.Arm.of(values[0] + values[1], bernoulli=higher_is_better).variance
    planned = sequential.planned_samples(pooled, settings.alpha, margin, margin / 2)
    result.update(labelled=True, planned_samples=planned, primary=name, primary_margin=margin,
                  trace=_trace(values, higher_is_better, settings.alpha, margin))
    result["evidence"].insert(0, _row(f"live {name} (labelled)", stable_arm, canary_arm, interval,
                                      f"promote above 0 (or above -{margin:.3g} at {planned} per version); "
                                      "rollback below 0"))
    count = min(stable_arm.n, canary_arm.n)
    said = (_too_early(result, verdict, count, settings, "labelled answers")
            or _guardrails(verdict, settings, error_iv, latency_iv, latency_margin))
    if said:
        return said
    where = f"always-valid {1 - settings.alpha:.0%} interval [{interval.low:.4f}, {interval.high:.4f}]"
    shown = f"live {name} {canary_arm.mean:.4f} vs {stable_arm.mean:.4f}"
    if interval.high < 0:
        return verdict(ROLLBACK, f"the canary is worse: {shown} on {canary_arm.n}/{stable_arm.n} labelled answers; "
                                 f"the difference's {where} is below 0")
    if interval.low > 0:
        return verdict(PROMOTE, f"the canary is better: {shown} on {canary_arm.n}/{stable_arm.n} labelled answers; "
                                f"the difference's {where} is above 0")
    if count >= planned:
        if interval.low > -margin:
            return verdict(PROMOTE, f"no worse than the stable version by more than {margin:.3g} after the test's "
                                    f"{planned} labelled answers per version: {shown}, {where}")
        return verdict(ROLLBACK, f"not shown to be within {margin:.3g} of the stable version after {planned} labelled "
                                 f"answers per version: {shown}, {where}")
    return verdict(WAIT, f"no difference shown yet ({shown}, {where} holds 0); {count} of the test's {planned} "
                         "labelled answers per version")


def _unlabelled(result, verdict, s, c, problem_type, settings, error_iv, latency_iv, latency_margin):
    count = min(len(s), len(c))
    said = _too_early(result, verdict, count, settings, "answers") or _guardrails(verdict, settings, error_iv,
                                                                                  latency_iv, latency_margin)
    ok = [r for r in s if not _failed(r)], [r for r in c if not _failed(r)]
    if problem_type == "classification":
        classes = sorted({str(r["prediction"].get("class")) for arm in ok for r in arm})
        series = {f"share of class {k}": [[float(str(r["prediction"].get("class")) == k) for r in arm] for arm in ok]
                  for k in classes}
        bernoulli, variance, margin = True, 0.25, settings.prediction_margin
    else:
        series = {"mean prediction": [[float(r["prediction"]["prediction"]) for r in arm
                                       if "prediction" in r["prediction"]] for arm in ok]}
        variance = sequential.Arm.of(series["mean prediction"][0]).variance
        variance = variance if variance > 0 else 1.0
        bernoulli, margin = False, settings.prediction_margin * math.sqrt(variance)
    alpha = settings.alpha / max(1, len(series))
    moved, inside = [], True
    for name, (stable_values, canary_values) in series.items():
        arms = sequential.Arm.of(stable_values, bernoulli), sequential.Arm.of(canary_values, bernoulli)
        interval = sequential.compare(*arms, alpha, margin)
        result["evidence"].append(_row(name, *arms, interval, f"within ±{margin:.3g} to promote"))
        if interval.low > margin or interval.high < -margin:
            moved.append(f"{name} {interval.estimate:+.3f}")
        inside = inside and -margin < interval.low and interval.high < margin
    planned = sequential.planned_samples(variance, alpha, margin, margin / 2)
    result["planned_samples"] = planned
    if said:
        return said
    if moved:
        return verdict(WAIT, f"the canary's predictions differ from the stable version's ({', '.join(moved)}) and no "
                             "labels say which is right: give the late labels (--labels) to decide")
    if count >= planned and inside:
        return verdict(PROMOTE, f"answers like the stable version after {count} answers per version (every "
                                "prediction share within its margin, no more errors, no slower): no labels, so "
                                "only behaviour was compared")
    return verdict(WAIT, f"{count} of the test's {planned} answers per version (no labels: predictions compared)")


def _trace(values, higher_is_better: bool, alpha: float, margin: float) -> list[dict]:
    """The primary interval as the samples came in (for the plot): at ~TRACE_POINTS prefixes of both arms."""
    stable_values, canary_values = values
    points = []
    steps = max(2, min(TRACE_POINTS, min(len(stable_values), len(canary_values))))
    for step in range(1, steps + 1):
        ns, nc = max(2, len(stable_values) * step // steps), max(2, len(canary_values) * step // steps)
        iv = sequential.compare(sequential.Arm.of(stable_values[:ns], higher_is_better),
                                sequential.Arm.of(canary_values[:nc], higher_is_better), alpha, margin,
                                higher_is_better)
        points.append({"n": min(ns, nc), "estimate": iv.estimate, "low": max(iv.low, -1e6), "high": min(iv.high, 1e6)})
    return points


def rollout_decision(result: dict, service: dict | None):
    """The verdict as the Pusher's RolloutDecision: its promote/rollback patches; with a cluster's status, KServe's
    own state has a say in a promotion (a revision that is not ready is not promoted)."""
    from kubetfx.components.pusher import inference_service as isvc
    from kubetfx.components.pusher import rollout

    reason = f"canary version {result['canary']} vs {result['stable']}: {result['reason']}"
    if result["action"] == WAIT:
        return rollout.RolloutDecision(WAIT, reason)
    if result["action"] == PROMOTE:
        if service and service.get("status"):
            decided = rollout.decide_rollout(service, canary_healthy=True)
            return rollout.RolloutDecision(decided.action, f"{reason}; KServe: {decided.reason}", decided.patch)
        return rollout.RolloutDecision(PROMOTE, reason, rollout.promote_patch())
    annotations = isvc.get_path(service or {}, "metadata", "annotations", default={}) or {}
    return rollout.RolloutDecision(ROLLBACK, reason, rollout.rollback_patch(
        annotations.get(isvc.PREVIOUS_STORAGE_URI), annotations.get(isvc.PREVIOUS_MODEL_VERSION), reason))


# ----------------------------------------------------------------------------- report


def interval_svg(result: dict, width: int = 520, height: int = 200, pad: int = 34) -> str:
    """The primary difference (canary - stable) and its always-valid interval as samples came in."""
    trace = result.get("trace") or []
    if not trace:
        return ""
    margin = result.get("primary_margin") or result["margin"]
    planned = result.get("planned_samples") or trace[-1]["n"]
    xmax = max(planned, trace[-1]["n"]) * 1.05
    lows = [p["low"] for p in trace[len(trace) // 4:]] + [-margin * 2]
    highs = [p["high"] for p in trace[len(trace) // 4:]] + [margin * 2]
    ylo, yhi = max(min(lows), -1.0), min(max(highs), 1.0)

    def x(n):
        return pad + (width - 2 * pad) * n / xmax

    def y(v):
        v = min(max(v, ylo), yhi)
        return height - pad - (height - 2 * pad) * (v - ylo) / ((yhi - ylo) or 1.0)

    band = " ".join(f"{x(p['n']):.1f},{y(p['high']):.1f}" for p in trace) + " " + " ".join(
        f"{x(p['n']):.1f},{y(p['low']):.1f}" for p in reversed(trace))
    line = " ".join(f"{x(p['n']):.1f},{y(p['estimate']):.1f}" for p in trace)
    body = (f'<polygon points="{band}" fill="#4c72b0" fill-opacity="0.25"/>'
            f'<polyline points="{line}" fill="none" stroke="#4c72b0" stroke-width="2"/>'
            f'<line x1="{pad}" x2="{width - pad}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>'
            f'<line x1="{pad}" x2="{width - pad}" y1="{y(-margin):.1f}" y2="{y(-margin):.1f}" stroke="#c44" '
            f'stroke-dasharray="4 3"/><text x="{width - pad}" y="{y(-margin) + 12:.1f}" text-anchor="end" '
            f'fill="#c44">-margin {margin:.3g}</text>'
            f'<line x1="{x(planned):.1f}" x2="{x(planned):.1f}" y1="{pad}" y2="{height - pad}" stroke="#888" '
            f'stroke-dasharray="2 3"/><text x="{x(planned) - 3:.1f}" y="{pad + 10}" text-anchor="end" '
            f'fill="#666">planned n {planned}</text>'
            f'<text x="{pad}" y="14">{html.escape(result.get("primary", "difference"))}: canary - stable, '
            f'{1 - result["alpha"]:.0%} always-valid interval</text>'
            f'<text x="{pad}" y="{height - 8}">0</text><text x="{width - pad}" y="{height - 8}" text-anchor="end">'
            f'{int(xmax)} labelled answers per version</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
            f'font-size="10">{body}</svg>')


def html_section(result: dict) -> str:
    """The canary part of the monitor's report: the decision, the evidence table, the interval plot."""
    header = ["metric", "stable n", "stable", "canary n", "canary", "difference (+: canary better)", "interval",
              "decides"]
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
            e["metric"], e["stable_n"], e["stable"], e["canary_n"], e["canary"], e["difference"],
            f"[{e['low']}, {e['high']}]", e["verdict"])) + "</tr>" for e in result["evidence"])
    skew = "".join(f"<li>version {html.escape(str(v))}: largest feature skew {html.escape(str(d))}</li>"
                   for v, d in sorted(result.get("skew", {}).items()))
    return (f"<h2>Canary: version {html.escape(result['canary'])} vs {html.escape(result['stable'])} — "
            f"{result['action'].upper()}</h2><p>{html.escape(result['reason'])}</p>"
            f"<p>mixture SPRT, alpha {result['alpha']:g}, margin {result['margin']:g}; samples: stable "
            f"{result['samples']['stable']}, canary {result['samples']['canary']}; planned per version: "
            f"{result.get('planned_samples')}</p>"
            + "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + f"</tr>{rows}</table>"
            + (f"<ul>{skew}</ul>" if skew else "") + interval_svg(result))
