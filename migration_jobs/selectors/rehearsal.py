"""The fleet rehearsal's report as people read it: the newest one, and its plots (pygal, as SVG).

services/rehearsal.py writes the report as JSON (the source of truth) and as an HTML page made
here; the admin's Rehearsal page reads the newest JSON and draws the same plots.
"""

from __future__ import annotations

import html
import itertools
import json
from pathlib import Path
from typing import Any

# pygal ships no type information (no stubs, no py.typed): its charts are Any here.
import pygal  # type: ignore[import-untyped]
from django.conf import settings
from django.utils.safestring import SafeString, mark_safe
from pygal.graph.graph import Graph  # type: ignore[import-untyped]
from pygal.style import CleanStyle  # type: ignore[import-untyped]

# The report, a JSON document (services/rehearsal.py writes it, this module reads it back from disk):
# sections by name, each value of JSON's kinds, as a run's report is (MigrationRun.report).
Report = dict[str, Any]


def _phases(r: Report) -> str:
    phases = r["phases"]
    return (
        f"{r['fleet_seconds']} s (migrate {phases['migrate']['seconds']} s, verify {phases['verify']['seconds']} s,"
        f" cutover {phases['cutover']['seconds']} s)"
    )


def _downtime(r: Report) -> str:
    return " / ".join(str(r["downtime_seconds"][k]) for k in ("p50", "p95", "max"))


def _downtime_steps(r: Report) -> str:
    # Reports written before the steps were kept have none.
    steps = r.get("downtime_steps") or {}
    return ", ".join(f"{name} {figures['p95']}" for name, figures in steps.items()) or "-"


def _writes(r: Report) -> str:
    return f"{r['writes']['acknowledged']} / {r['writes']['refused']} / {r['writes']['lost']}"


def _extrapolated(r: Report) -> str:
    return f"{r['extrapolation']['seconds']} s for {r['extrapolation']['plan_agencies']} agencies"


SUMMARY = (
    ("Agencies cut over", lambda r: f"{r['agencies_cut_over']} of {r['agencies_total']}"),
    ("Rows", lambda r: f"{r['rows_total']:,}"),
    ("Fleet wall time", _phases),
    ("Nights", lambda r: r["nights"]),
    ("Fleet rows/s (migrate phase)", lambda r: r["fleet_rows_per_second"]),
    ("Largest agency's rows/s", lambda r: r["largest_agency_rows_per_second"]),
    ("Write downtime p50 / p95 / max (s)", _downtime),
    ("Write downtime by step, p95 (s)", _downtime_steps),
    ("App writes acknowledged / refused / lost", _writes),
    ("Throttle seconds", lambda r: r["throttle_seconds"]),
    ("Failures", lambda r: len(r["failures"])),
    ("Extrapolated to the plan's fleet", _extrapolated),
)


def rehearsal_report_dir() -> Path:
    return Path(settings.REHEARSAL_REPORT_DIR)


def rehearsal_latest(*, report_dir: Path | None = None) -> Report | None:
    """The newest report, or None when no rehearsal has written one (or it cannot be read)."""
    path = (report_dir or rehearsal_report_dir()) / "latest.json"
    try:
        report: Report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report


def rehearsal_summary(*, report: Report) -> list[tuple[str, str]]:
    return [(label, str(value(report))) for label, value in SUMMARY]


def rehearsal_charts(*, report: Report) -> dict[str, SafeString]:
    """Title -> an SVG plot: agencies over time in their lanes, the downtime distribution, rows/s."""
    return {
        "Agencies over time, one lane per concurrent run": _timeline(report),
        "Write downtime per cutover": _downtimes(report),
        "Rows copied per second": _throughput(report),
    }


def _svg(chart: Graph) -> SafeString:
    # pygal's output is its own SVG, built from numbers and the agency names it escapes itself.
    svg: str = chart.render(is_unicode=True, disable_xml_declaration=True)
    return mark_safe(svg)


def _lanes(runs: list[Report]) -> list[tuple[Report, int]]:
    """Each run with a lane: the lowest one free at its start (as many lanes as ran at once)."""
    placed: list[tuple[Report, int]] = []
    ends: list[float] = []  # each lane's last end, in seconds since the start
    for run in sorted((r for r in runs if r["start"] is not None and r["end"] is not None), key=lambda r: r["start"]):
        lane = next((i for i, end in enumerate(ends) if end <= run["start"]), len(ends))
        if lane == len(ends):
            ends.append(run["end"])
        else:
            ends[lane] = run["end"]
        placed.append((run, lane + 1))
    return placed


def _timeline(report: Report) -> SafeString:
    chart = pygal.XY(
        style=CleanStyle, allow_interruptions=True, show_dots=False, stroke_style={"width": 6}, height=360,
        x_title="seconds since the start", y_title="lane",
    )  # fmt: skip
    series: dict[str, list[tuple[float, int] | None]] = {}  # None: a break in the line
    for run, lane in _lanes(report["runs"]):
        series.setdefault(run["kind"], []).extend([(run["start"], lane), (run["end"], lane), None])
    for kind, points in sorted(series.items()):
        chart.add(kind, points)
    return _svg(chart)


def _downtimes(report: Report) -> SafeString:
    values = sorted(a["downtime_seconds"] for a in report["agencies"] if a["downtime_seconds"] is not None)
    chart = pygal.Histogram(style=CleanStyle, height=300, x_title="seconds of write downtime", y_title="agencies")
    if values:
        width = max((values[-1] - values[0]) / 10, 0.01)
        buckets: dict[int, int] = {}
        for value in values:
            buckets[int((value - values[0]) / width)] = buckets.get(int((value - values[0]) / width), 0) + 1
        chart.add(
            "cutovers",
            [(count, values[0] + b * width, values[0] + (b + 1) * width) for b, count in sorted(buckets.items())],
        )
    return _svg(chart)


def _throughput(report: Report) -> SafeString:
    samples = report["samples"]
    points = [
        (b["t"], round((b["rows"] - a["rows"]) / max(b["t"] - a["t"], 0.001), 1))
        for a, b in itertools.pairwise(samples)
    ]
    chart = pygal.XY(style=CleanStyle, show_dots=False, height=300, x_title="seconds since the start", y_title="rows/s")
    chart.add("migrations", points)
    return _svg(chart)


def rehearsal_html(*, report: Report) -> str:
    """A page on its own (no server needed): the summary, the plots, the slowest agencies and the failures."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rehearsal_summary(report=report)
    )
    plots = "".join(f"<h2>{html.escape(t)}</h2>{svg}" for t, svg in rehearsal_charts(report=report).items())
    slowest = "".join(
        f"<tr><td>{html.escape(a['name'])}</td><td>{a['rows']}</td><td>{a['migrate_seconds']}</td>"
        f"<td>{a['verify_seconds']}</td><td>{a['cutover_seconds']}</td><td>{a['downtime_seconds']}</td></tr>"
        for a in report["slowest"]
    )
    failures = (
        "".join(
            f"<li>{html.escape(f['agency'])}: {html.escape(f['kind'])} at {html.escape(f['step'] or '?')}:"
            f" {html.escape(f['reason'] or '')}</li>"
            for f in report["failures"]
        )
        or "<li>none</li>"
    )
    return (
        "<!doctype html><meta charset=utf-8><title>Fleet rehearsal</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "td,th{padding:2px 8px;text-align:left}</style>"
        f"<h1>Fleet rehearsal of {report['at'][:19]} UTC</h1><table>{rows}</table>{plots}"
        "<h2>Slowest agencies</h2><table><tr><th>agency</th><th>rows</th><th>migrate s</th><th>verify s</th>"
        f"<th>cutover s</th><th>downtime s</th></tr>{slowest}</table><h2>Failures</h2><ul>{failures}</ul>"
        f"<h2>Extrapolation</h2><p>{html.escape(report['extrapolation']['assumptions'])}</p>"
    )
