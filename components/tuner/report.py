"""The Tuner's HTML report: the best trial, the objective per trial as an inline SVG, the trials table."""

from __future__ import annotations

import html

WIDTH, HEIGHT, PAD = 520, 200, 36
COLORS = {"COMPLETE": "#4c72b0", "PRUNED": "#aaaaaa", "FAIL": "#c44e52"}
BEST_COLOR = "#dd8452"


def objective_svg(trials: list, direction: str, objective: str, best_number: int | None) -> str:
    """One dot per trial (pruned grey), the best so far as a step line, the best trial circled."""
    points = [(t.number, t.objective) for t in trials if t.objective is not None]
    if not points:
        return ""
    values = [v for _, v in points]
    low, high = min(values), max(values)
    span = (high - low) or max(abs(high), 1e-9) * 0.1
    low, high = low - span * 0.05, high + span * 0.05
    last = max(t.number for t in trials) or 1

    def x(number):
        return PAD + (WIDTH - 2 * PAD) * number / last

    def y(value):
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (value - low) / (high - low)

    shapes, running, line = [], None, []
    for trial in trials:
        if trial.objective is None:
            continue
        if trial.state == "COMPLETE":
            better = running is None or (trial.objective > running if direction == "max" else trial.objective < running)
            running = trial.objective if better else running
            line.append(f"{x(trial.number):.1f},{y(running):.1f}")
        shapes.append(f'<circle cx="{x(trial.number):.1f}" cy="{y(trial.objective):.1f}" r="3.5" '
                      f'fill="{COLORS.get(trial.state, "#999")}"><title>trial {trial.number} ({trial.state.lower()}): '
                      f'{trial.objective:.4g}</title></circle>')
        if trial.number == best_number:
            shapes.append(f'<circle cx="{x(trial.number):.1f}" cy="{y(trial.objective):.1f}" r="7" fill="none" '
                          f'stroke="{BEST_COLOR}" stroke-width="2"/>')
    body = (f'<polyline points="{" ".join(line)}" fill="none" stroke="{BEST_COLOR}" stroke-width="1.5"/>'
            if line else "")
    body += "".join(shapes)
    body += (f'<text x="{PAD}" y="14">{html.escape(objective)} per trial ({"higher" if direction == "max" else "lower"}'
             f' is better; grey: pruned; line: best so far)</text>'
             f'<text x="{PAD - 4}" y="{y(high - span * 0.05) + 4:.1f}" text-anchor="end">{high - span * 0.05:.3g}</text>'
             f'<text x="{PAD - 4}" y="{y(low + span * 0.05) + 4:.1f}" text-anchor="end">{low + span * 0.05:.3g}</text>'
             f'<text x="{PAD}" y="{HEIGHT - 10}">trial 0</text>'
             f'<text x="{WIDTH - PAD}" y="{HEIGHT - 10}" text-anchor="end">trial {last}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
            f'font-size="10">{body}</svg>')


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def render(record: dict, trials: list) -> str:
    """The whole page; ``record`` is what kubetfx_tuning.json holds."""
    style = ("body{font-family:sans-serif;margin:16px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}")
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><style>" + style + "</style></head><body>",
             "<h1>Tuner</h1>"]
    if not record.get("tuned"):
        parts.append(f"<p>No search: {html.escape(record.get('reason', ''))}</p></body></html>\n")
        return "".join(parts)
    best = record.get("best_trial") or {}
    parts.append(f"<p><b>Best trial {best.get('number')}</b>: {html.escape(record['objective'])} = "
                 f"{_cell(best.get('objective'))}; values "
                 + ", ".join(f"<code>{html.escape(k)}={_cell(v)}</code>" for k, v in (best.get("values") or {}).items())
                 + f". {len(trials)} trials ({sum(t.state == 'PRUNED' for t in trials)} pruned) in "
                 f"{_cell(record.get('search_seconds'))} s with {html.escape(record.get('library', ''))}; seed "
                 f"{record.get('seed')}.</p>")
    parts.append(objective_svg(trials, record["direction"], record["objective"], best.get("number")))
    names = sorted({name for t in trials for name in t.values})
    rows = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in
                                    [t.number, t.state.lower(), "–" if t.objective is None else t.objective, t.epochs,
                                     t.seconds] + [t.values.get(n, "") for n in names]) + "</tr>" for t in trials)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["trial", "state", record["objective"], "epochs", "seconds"]
                   + names)
    parts.append(f"<h2>Trials</h2><table><tr>{head}</tr>{rows}</table>")
    if record.get("search_space"):
        parts.append("<h2>Search space</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>"
                                                          for line in record["search_space"]) + "</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)
