"""The monitor's HTML report: the decision first, then per feature training vs serving and the distance over time.

Plots are inline SVG written here (no plotting library in the image, nothing to load in the KFP UI).
"""

from __future__ import annotations

import dataclasses
import html
import math

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from kubetfx.components.common import tfmd
from kubetfx.components.data_validation.validation import string_value_counts
from kubetfx.components.model_monitor import canary

WIDTH, HEIGHT, PAD = 420, 160, 28
TRAINING_COLOR, SERVING_COLOR = "#4c72b0", "#dd8452"
L_INFTY = anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY
MAX_CATEGORIES = 12


@dataclasses.dataclass
class PlotData:
    training: statistics_pb2.DatasetFeatureStatistics
    serving: statistics_pb2.DatasetFeatureStatistics
    measurements: list
    over_time: list


def _svg(body: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="10">{body}</svg>')


def _legend() -> str:
    return (f'<rect x="{WIDTH - 150}" y="4" width="10" height="10" fill="{TRAINING_COLOR}"/>'
            f'<text x="{WIDTH - 136}" y="13">training</text>'
            f'<rect x="{WIDTH - 80}" y="4" width="10" height="10" fill="{SERVING_COLOR}"/>'
            f'<text x="{WIDTH - 66}" y="13">serving</text>')


def categorical_svg(training: dict, serving: dict) -> str:
    """Side-by-side bars of each category's share (top categories of either side)."""
    keys = sorted(set(training) | set(serving), key=lambda k: -(training.get(k, 0) + serving.get(k, 0)))
    keys = keys[:MAX_CATEGORIES]
    total_t, total_s = sum(training.values()) or 1, sum(serving.values()) or 1
    top = max([training.get(k, 0) / total_t for k in keys] + [serving.get(k, 0) / total_s for k in keys] + [1e-9])
    slot = (WIDTH - 2 * PAD) / max(1, len(keys))
    bars = []
    for i, key in enumerate(keys):
        x = PAD + i * slot
        for j, (share, color) in enumerate(((training.get(key, 0) / total_t, TRAINING_COLOR),
                                            (serving.get(key, 0) / total_s, SERVING_COLOR))):
            h = (HEIGHT - 2 * PAD) * share / top
            bars.append(f'<rect x="{x + j * slot * 0.4 + slot * 0.1:.1f}" y="{HEIGHT - PAD - h:.1f}" '
                        f'width="{slot * 0.4:.1f}" height="{h:.1f}" fill="{color}"><title>{html.escape(key)}: '
                        f'{share:.1%}</title></rect>')
        bars.append(f'<text x="{x + slot / 2:.1f}" y="{HEIGHT - PAD + 12}" text-anchor="middle">'
                    f'{html.escape(key[:10])}</text>')
    return _svg(_legend() + "".join(bars))


def _buckets(stats) -> list[tuple[float, float, float]]:
    histogram = next((h for h in stats.num_stats.histograms if h.type == statistics_pb2.Histogram.STANDARD), None)
    if histogram is None:
        return []
    return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets
            if math.isfinite(b.low_value) and math.isfinite(b.high_value)]


def numeric_svg(training_stats, serving_stats) -> str:
    """Both histograms as densities on one axis (each bucket's share spread over its width)."""
    series = [(_buckets(training_stats), TRAINING_COLOR), (_buckets(serving_stats), SERVING_COLOR)]
    edges = [v for buckets, _ in series for low, high, _ in buckets for v in (low, high)]
    if not edges:
        return ""
    low, high = min(edges), max(edges)
    span = (high - low) or 1.0
    densities = []
    for buckets, _ in series:
        total = sum(count for _, _, count in buckets) or 1
        densities.append([(lo, hi, count / total / ((hi - lo) or span / 100)) for lo, hi, count in buckets])
    top = max([d for series_d in densities for _, _, d in series_d] + [1e-12])
    shapes = []
    for (buckets, color), series_d in zip(series, densities):
        for lo, hi, density in series_d:
            x0 = PAD + (lo - low) / span * (WIDTH - 2 * PAD)
            x1 = PAD + (hi - low) / span * (WIDTH - 2 * PAD)
            h = (HEIGHT - 2 * PAD) * density / top
            shapes.append(f'<rect x="{x0:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{max(x1 - x0, 0.5):.1f}" '
                          f'height="{h:.1f}" fill="{color}" fill-opacity="0.5"/>')
    axis = (f'<text x="{PAD}" y="{HEIGHT - 8}">{low:.4g}</text>'
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end">{high:.4g}</text>')
    return _svg(_legend() + "".join(shapes) + axis)


def over_time_svg(points: list[float], threshold: float | None) -> str:
    """The distance per time slice of the window, with the threshold as a dashed line."""
    if not points:
        return ""
    top = max(points + [threshold or 0, 1e-9]) * 1.1
    step = (WIDTH - 2 * PAD) / max(1, len(points) - 1)

    def y(value):
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top

    line = " ".join(f"{PAD + i * step:.1f},{y(v):.1f}" for i, v in enumerate(points))
    body = f'<polyline points="{line}" fill="none" stroke="{SERVING_COLOR}" stroke-width="2"/>'
    body += "".join(f'<circle cx="{PAD + i * step:.1f}" cy="{y(v):.1f}" r="2.5" fill="{SERVING_COLOR}">'
                    f'<title>slice {i + 1}: {v:.4g}</title></circle>' for i, v in enumerate(points))
    if threshold is not None:
        body += (f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
                 f'stroke="#c44" stroke-dasharray="4 3"/><text x="{WIDTH - PAD}" y="{y(threshold) - 3:.1f}" '
                 f'text-anchor="end" fill="#c44">threshold {threshold:g}</text>')
    body += f'<text x="{PAD}" y="12">distance to training, per time slice</text>'
    return _svg(body)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(metadata: dict, decision: dict, result, data: PlotData | None, over_time: list) -> str:
    window = metadata["window"]
    verdict = ("RETRAIN" if decision["retrain"] else "nothing decided" if decision.get("note")
               else "no retraining needed")
    parts = [f"<h1>Model monitor: {html.escape(metadata['model_name'])} — {verdict}</h1>",
             f"<p>{window['records']} logged predictions from {html.escape(str(window['start']))} to "
             f"{html.escape(str(window['end']))}; model versions {', '.join(window['versions']) or '–'}"
             + (f"; {window['unreadable_lines']} unreadable log lines skipped" if window["unreadable_lines"] else "")
             + (f"; records since {html.escape(window['since']['reason'])} ({html.escape(window['since']['time'])})"
                if window.get("since") else "") + "</p>"]
    if window.get("retention"):
        parts.append(f"<p>Records up to {html.escape(window['retention']['deleted_through'])} were deleted by the "
                     f"log's retention ({window['retention']['deleted_files']} files): the window starts later "
                     "than asked.</p>")
    if decision.get("note"):
        parts.append(f"<p>{html.escape(decision['note'])}</p>")
    if decision.get("deferred"):
        parts.append(f"<p>Retraining deferred: {html.escape(decision['deferred'])}.</p>")
    if metadata.get("canary"):
        parts.append(canary.html_section(metadata["canary"]))
    if decision["reasons"]:
        parts.append("<h2>Why</h2><ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in decision["reasons"])
                     + "</ul>")
    if decision.get("alerts"):
        parts.append("<h2>Alerts (retraining cannot fix these: fix the clients or the schema)</h2><ul>"
                     + "".join(f"<li>{html.escape(r)}</li>" for r in decision["alerts"]) + "</ul>")
    if metadata.get("live_quality"):
        parts.append("<h2>Live quality</h2>" + _table(["metric", "value"], sorted(metadata["live_quality"].items())))
    if result is None or data is None:
        return _page(parts)
    parts.append("<h2>Training/serving skew</h2>" + _table(
        ["feature", "measure", "distance", "threshold", "anomalous"],
        [[m.feature, "L-infinity" if m.measure == L_INFTY else "Jensen-Shannon", f"{m.value:.4g}",
          "–" if m.threshold is None else f"{m.threshold:g}", "yes" if m.anomalous else ""]
         for m in sorted(result.measurements, key=lambda m: -m.value)]))
    training = {tfmd.feature_name(f): f for f in data.training.features}
    serving = {tfmd.feature_name(f): f for f in data.serving.features}
    parts.append("<h2>Per feature</h2>")
    for m in sorted(result.measurements, key=lambda m: -m.value):
        a, b = training.get(m.feature), serving.get(m.feature)
        if a is None or b is None:
            continue
        if m.measure == L_INFTY:
            chart = categorical_svg(string_value_counts(a)[0], string_value_counts(b)[0])
        else:
            chart = numeric_svg(a, b)
        trend = over_time_svg([s["distances"].get(m.feature, 0.0) for s in over_time], m.threshold)
        parts.append(f"<h3>{html.escape(m.feature)}</h3><div>{chart}{trend}</div>")
    return _page(parts)


def _page(parts: list[str]) -> str:
    style = ("body{font-family:sans-serif;margin:16px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}svg{margin-right:12px}")
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" + \
        "\n".join(parts) + "</body></html>\n"
