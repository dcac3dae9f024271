"""Ratios, targets (met or missed, never asserted), the printed table and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.profile import profile_lines
from benchmarks.repeats import spread_of

MIB = 1024 * 1024


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def _rss_ratio(sizes: list[dict]) -> float | None:
    peaks = [s["peak_rss_bytes"] for s in sizes if s["migration_status"] == "succeeded"]
    return round(max(peaks) / min(peaks), 3) if len(peaks) > 1 else (1.0 if peaks else None)


# (figure, label, wanted, test): the targets, as ratios so they hold from machine to machine.
TARGETS = (
    ("migration_vs_pgloader", "migration / pgloader rows/s", ">= 1", lambda v: v >= 1),
    ("migration_vs_baseline", "migration / baseline rows/s", ">= 0.6", lambda v: v >= 0.6),
    ("verification_vs_migration_time", "verification / migration wall time", "<= 0.2", lambda v: v <= 0.2),
    ("rss_max_over_min", "worker peak RSS max / min over sizes", "<= 1.2", lambda v: v <= 1.2),
    ("changelist_p95_ms", "changelist p95 (ms)", "< 300", lambda v: v < 300),
    ("rls_read_vs_owner", "RLS read p95 authenticated / owner", "<= 1.5", lambda v: v <= 1.5),
    ("cutover_window_seconds", "cutover write downtime (s)", "<= 1", lambda v: v <= 1),
    ("cutover_window_vs_full_catch_up", "cutover window / full re-read catch-up", "<= 0.1", lambda v: v <= 0.1),
    ("writes_with_capture_vs_without", "RevOS writes/s captured / not", ">= 0.9", lambda v: v >= 0.9),
    (
        "unified_writes_moving_vs_without",
        "unified app writes/s, moving / none",
        ">= 0.95",
        lambda v: v >= 0.95,
    ),
    ("fleet_vs_single_agency", "fleet rows/s / one large agency's", ">= 0.8", lambda v: v >= 0.8),
    ("fleet_downtime_p95_seconds", "fleet write downtime p95 (s)", "<= 2", lambda v: v <= 2),
    ("fleet_downtime_max_seconds", "fleet write downtime max (s)", "<= 5", lambda v: v <= 5),
    ("fleet_writes_lost", "fleet app writes lost", "0", lambda v: v == 0),
)
FLEET_TARGETS = tuple(target for target in TARGETS if target[0].startswith("fleet_"))
REPEATED_RATIOS = ("migration_vs_baseline", "migration_vs_baseline_fk", "migration_vs_pgloader")


def _repeat_ratios(repeat: dict) -> dict:
    """The ratios of one repeat, whose figures were measured one after the other."""
    migration, verification = repeat["migration"], repeat["verification"]
    # A verification stopped for taking too long has only a lower bound: the time waited.
    lower_bound = verification["seconds"] is None and verification.get("timed_out", False)
    verification_seconds = verification["waited_seconds"] if lower_bound else verification["seconds"]
    return {
        "migration_vs_baseline": _ratio(migration["rows_per_second"], repeat["baseline"].get("rows_per_second")),
        "migration_vs_baseline_fk": _ratio(migration["rows_per_second"], repeat["baseline_fk"].get("rows_per_second")),
        "migration_vs_pgloader": _ratio(migration["rows_per_second"], repeat["pgloader"].get("rows_per_second")),
        "verification_vs_migration_time": _ratio(verification_seconds, migration["seconds"]),
        "verification_vs_migration_time_is_lower_bound": lower_bound,
    }


# The ratios' spread over the repeats above which more repeats are run (BenchOptions.max_repeats).
SETTLED_SPREAD_PCT = 25


def repeats_settled(repeats: list[dict]) -> bool:
    """Is every repeated ratio within SETTLED_SPREAD_PCT over the repeats, and measured in every
    repeat where it was measured in any? A ratio some repeat lacks (its tool failed that time) is
    unsettled; one no repeat has (pgloader not installed) has nothing to settle."""
    per_repeat = [_repeat_ratios(repeat) for repeat in repeats]
    for key in (*REPEATED_RATIOS, "verification_vs_migration_time"):
        spread = spread_of([r[key] for r in per_repeat])
        if spread is None:
            continue
        if spread["samples"] < spread["of"]:
            return False
        if spread["spread_pct"] is not None and spread["spread_pct"] > SETTLED_SPREAD_PCT:
            return False
    return True


def repeated_ratio_spreads(repeats: list[dict]) -> dict:
    """Each ratio taken within a repeat, as its median and spread over the repeats (None: never measured)."""
    per_repeat = [_repeat_ratios(repeat) for repeat in repeats]
    return {
        key: spread_of([r[key] for r in per_repeat]) for key in (*REPEATED_RATIOS, "verification_vs_migration_time")
    }


def report_evaluate(report: dict) -> dict:
    """The ratios the issue sets targets on (medians over the repeats, with their spread), and
    whether each is met (None: it could not be measured)."""
    per_repeat = [_repeat_ratios(repeat) for repeat in report["repeats"]]
    spreads = repeated_ratio_spreads(report["repeats"])
    ratios = {key: spread["median"] if spread else None for key, spread in spreads.items()}
    ratios["verification_vs_migration_time_is_lower_bound"] = lower_bound = any(
        r["verification_vs_migration_time_is_lower_bound"] for r in per_repeat
    )
    ratios["rss_max_over_min"] = _rss_ratio(report["memory"]["sizes"])
    ratios.update(cutover_ratios(report.get("cutover", {})))
    window = report.get("cutover", {}).get("cutover", {}).get("window_seconds")
    ratios["rls_read_vs_owner"] = report["rls_read"]["authenticated_vs_owner_p95"]
    ratios["unified_writes_moving_vs_without"] = report.get("reverse_capture", {}).get("moving_vs_without")
    ratios.update(fleet_ratios(report.get("fleet", {})))
    figures = {**ratios, "changelist_p95_ms": report["changelist"]["p95_ms"], "cutover_window_seconds": window}
    targets = []
    for key, label, wanted, test in TARGETS:
        value = figures[key]
        bound = key == "verification_vs_migration_time" and lower_bound
        targets.append(
            {
                "name": label,
                "value": value,
                "spread": spreads.get(key),
                "at_least": bound,
                "target": wanted,
                "met": _met(value, test),
            }
        )
    return {"ratios": ratios, "ratio_spreads": spreads, "per_repeat_ratios": per_repeat, "targets": targets}


def fleet_ratios(fleet: dict) -> dict:
    """The fleet's figures the issue sets targets on (None: not measured)."""
    downtime = fleet.get("downtime_seconds") or {}
    return {
        "fleet_vs_single_agency": fleet.get("fleet_vs_single_agency"),
        "fleet_downtime_p95_seconds": downtime.get("p95"),
        "fleet_downtime_max_seconds": downtime.get("max"),
        "fleet_writes_lost": (fleet.get("writes") or {}).get("lost"),
    }


def _met(value: float | None, test) -> bool | None:
    return None if value is None else bool(test(value))


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _throughput_lines(report: dict) -> list[str]:
    lines = [f"{'':34}{'rows':>12}{'seconds':>10}{'rows/s':>12}  seconds over the repeats"]
    pgloader = report["pgloader"]
    for label, figures in (
        ("baseline (COPY -> COPY)", report["baseline"]),
        ("baseline with the target's FKs", report["baseline_fk"]),
        (f"pgloader ({pgloader['status']})" if pgloader["status"] != "ok" else _pgloader_label(pgloader), pgloader),
        ("migration (rqworker)", report["migration"]),
        ("verification (rqworker)", report["verification"]),
    ):
        seconds = _number(figures.get("seconds"), 1)
        if figures.get("timed_out"):
            seconds = f">{figures['waited_seconds']:.0f}" if "waited_seconds" in figures else "killed"
        lines.append(
            f"{label:34}{_number(figures.get('rows')):>12}{seconds:>10}{_number(figures.get('rows_per_second')):>12}"
            f"  {_spread_text(figures.get('seconds_spread'))}"
        )
    return lines


def _pgloader_label(pgloader: dict) -> str:
    """'pgloader (heap 4,096 MiB)': the heap it was given, so a reader knows it was not starved."""
    heap = pgloader.get("heap_mb")
    return f"pgloader (heap {heap:,} MiB)" if isinstance(heap, int) else "pgloader"


def _spread_text(spread: dict | None) -> str:
    """'median 1.23 (1.10-1.40, spread 24.4 %, 3 of 3)'; '' for a figure measured once or not at all."""
    if not spread or spread["of"] < 2:
        return ""
    percent = "" if spread["spread_pct"] is None else f", spread {spread['spread_pct']} %"
    return f"{spread['min']:,.2f}-{spread['max']:,.2f}{percent}, {spread['samples']} of {spread['of']}"


def _target_lines(report: dict) -> list[str]:
    lines = [f"{'target (median of the repeats)':40}{'value':>10}  {'wanted':<9}{'result':<14}repeats: range"]
    for target in report["targets"]:
        result = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        value = (">" if target.get("at_least") else "") + _number(target["value"], 2)
        lines.append(
            f"{target['name']:40}{value:>10}  {target['target']:<9}{result:<14}{_spread_text(target.get('spread'))}"
        )
    ratio = _number(report["ratios"]["migration_vs_baseline_fk"], 2)
    lines.append(f"{'migration / baseline with FKs rows/s':40}{ratio:>10}  (no target: the limit of the live tables)")
    return lines


def _scale_lines(report: dict) -> list[str]:
    """The migration against pgloader and the raw COPY pipe at each agency size measured with repeats."""
    wanted = {key: target for key, _, target, _ in TARGETS}
    lines = [
        "throughput by agency size (medians of the repeats; the ratios' range in brackets):",
        f"{'agency rows':>12}{'migration rows/s':>18}  {'/ pgloader ' + wanted['migration_vs_pgloader']:<24}"
        f"{'/ raw COPY ' + wanted['migration_vs_baseline']:<24}{'peak RSS MiB':>12}",
    ]
    for scale in report.get("scales", []):
        migration, spreads = scale["migration"], scale["ratio_spreads"]
        rss = migration.get("peak_rss_bytes")
        lines.append(
            f"{_number(migration.get('rows')):>12}{_number(migration.get('rows_per_second')):>18}"
            f"  {_ratio_text(spreads['migration_vs_pgloader']):<24}{_ratio_text(spreads['migration_vs_baseline']):<24}"
            f"{_number(rss / MIB if rss else None, 1):>12}"
        )
    return lines


def _ratio_text(spread: dict | None) -> str:
    """'0.59 (0.36-0.89)', or '-' where the ratio was never measured."""
    if not spread:
        return "-"
    return f"{spread['median']:.2f} ({spread['min']:.2f}-{spread['max']:.2f})"


def _memory_lines(report: dict) -> list[str]:
    lines = [f"{'agency rows':>12}{'peak RSS MiB':>14}{'tree MiB':>10}{'migration rows/s':>18}{'verify s':>10}"]
    for size in report["memory"]["sizes"]:
        lines.append(
            f"{_number(size['rows']):>12}{_number(size['peak_rss_bytes'] / MIB, 1):>14}"
            f"{_number(size['tree_peak_rss_bytes'] / MIB, 1):>10}"
            f"{_number(size['migration_rows_per_second']):>18}{_verify_seconds(size):>10}"
        )
    return lines


def cutover_ratios(cutover: dict) -> dict:
    """The cutover measurement's ratios: its window and the capture's catch-up against a full re-read,
    and the RevOS writes with capture against without."""
    full = cutover.get("full_catch_up", {}).get("seconds")
    overhead = cutover.get("capture_overhead", {})
    return {
        "cutover_window_vs_full_catch_up": _ratio(cutover.get("cutover", {}).get("window_seconds"), full),
        "capture_catch_up_vs_full_catch_up": _ratio(cutover.get("capture_catch_up", {}).get("seconds"), full),
        "writes_with_capture_vs_without": _ratio(
            overhead.get("with_capture_rows_per_second"), overhead.get("without_capture_rows_per_second")
        ),
    }


def cutover_report_table(report: dict) -> str:
    """What `--only cutover` prints: the cutover lines and its window ratio."""
    ratio = report["ratios"]["cutover_window_vs_full_catch_up"]
    return "\n".join(
        [
            *_cutover_lines(report),
            f"cutover window / full re-read catch-up: {_number(ratio, 3)} (target <= 0.1)",
            *_reverse_capture_lines(report),
        ]
    )


def _cutover_lines(report: dict) -> list[str]:
    cutover = report.get("cutover", {})
    if cutover.get("status") != "measured":
        return [f"cutover: {cutover.get('status', 'not run')}"]
    run, ratios, overhead = cutover["cutover"], report["ratios"], cutover["capture_overhead"]
    capture_catch_up, full = cutover["capture_catch_up"], cutover["full_catch_up"]
    return [
        f"cutover ({cutover['changes']:,} rows changed before each step, {_number(cutover.get('people'))} people):"
        f" {run['status']},"
        f" write downtime (fence to switch) {_number(run.get('window_seconds'), 2)} s,"
        f" final catch-up {_number(run.get('catch_up_seconds'), 2)} s ({_number(run.get('changed_rows'))} rows)",
        "  steps (s): " + ", ".join(f"{name} {_number(sec, 2)}" for name, sec in run.get("steps", {}).items()),
        "  app writes meanwhile ({per_second}/s): {acknowledged} acknowledged, {refused} refused by the fence".format(
            **run.get("app_writes", {"per_second": "-", "acknowledged": "-", "refused": "-"})
        ),
        f"catch-up from the capture {_number(capture_catch_up['seconds'], 2)} s vs full re-read"
        f" {_number(full['seconds'], 2)} s (ratio {_number(ratios['capture_catch_up_vs_full_catch_up'], 3)})",
        f"RevOS single-row writes: {_number(overhead['without_capture_rows_per_second'])} rows/s without capture,"
        f" {_number(overhead['with_capture_rows_per_second'])} with"
        f" (ratio {_number(ratios['writes_with_capture_vs_without'], 2)}, {overhead['writes']} writes each,"
        f" {_number(overhead.get('recorded'))} recorded)",
    ]


def _problem_lines(report: dict) -> list[str]:
    """Anything that makes a figure missing or suspect, said next to the figures."""
    lines = []
    for name in ("pgloader", "migration", "verification"):
        if error := report[name].get("error") or report[name].get("output"):
            lines.append(f"{name}: {error.strip()}")
    cutover = report.get("cutover", {})
    for name in ("capture_catch_up", "full_catch_up", "cutover"):
        if error := cutover.get(name, {}).get("error"):
            lines.append(f"{name}: {error.strip()}")
    if report["verification"].get("not_passed"):
        lines.append(f"verification checks not passed: {', '.join(report['verification']['not_passed'])}")
    for size in report["memory"]["sizes"]:
        if size["migration_status"] != "succeeded" or size["verification_verdict"] != "pass":
            lines.append(
                f"size {size['rows_requested']:,}: migration {size['migration_status']},"
                f" verification {size['verification_verdict'] or 'not finished'}"
            )
    if report["code"]["changed_files"]:
        lines.append(
            f"measured on {report['code']['commit']} with uncommitted changes to: "
            + ", ".join(report["code"]["changed_files"])
        )
    return ["", "notes:", *lines] if lines else []


def _verify_seconds(size: dict) -> str:
    if size["verification_seconds"] is None and size["verification_waited_seconds"]:
        return f">{size['verification_waited_seconds']:.0f}"
    return _number(size["verification_seconds"], 1)


def _reverse_capture_lines(report: dict) -> list[str]:
    figures = report.get("reverse_capture") or {"status": "not measured"}
    if figures["status"] != "ok":
        return [f"capture and guard cost on other agencies' unified writes: {figures['status']}"]
    return [
        f"an agency's unified app writes/s, one row per transaction as `authenticated` ({figures['writes']:,}"
        f" writes, median of {figures['repeats']}): {figures['without_trigger_per_second']:,} without the"
        f" capture and guard triggers, {figures['trigger_idle_per_second']:,} ({figures['idle_vs_without']}x)"
        f" with them idle, {figures['agencies_moving_per_second']:,} ({figures['moving_vs_without']}x) while"
        " other agencies are captured and guarded",
        _server_cpu_line(figures),
    ]


def _server_cpu_line(figures: dict) -> str:
    cpu = figures.get("server_cpu_us_per_write")
    if not isinstance(cpu, dict):
        return f"  the server's CPU per write: {cpu or 'not measured'}"
    return (
        f"  the server's CPU per write (least of the repeats): {cpu['without']} µs without the triggers,"
        f" {cpu['idle']} µs idle, {cpu['moving']} µs while agencies move"
        f" (+{figures['server_cpu_added_moving']:.0%}; the round trips and the commit's flush come on top)"
    )


def _fleet_lines(report: dict) -> list[str]:
    fleet = report.get("fleet") or {"status": "not run"}
    if not fleet["status"].startswith("measured"):
        return [f"fleet: {fleet['status']}", *([fleet["output"]] if fleet.get("output") else [])]
    single, downtime, writes = fleet["single_agency"], fleet["downtime_seconds"], fleet["writes"]
    phases, extrapolation = fleet["phases_seconds"], fleet["extrapolation"]
    steps = ", ".join(f"{name} {_number(f['p95'], 2)}" for name, f in fleet["downtime_steps"].items())
    lines = [
        f"fleet ({fleet['status']}): {fleet['agencies_cut_over']} of {fleet['agencies_total']} agencies cut over,"
        f" {fleet['rows']:,} rows (Zipf, the largest {fleet['largest_rows']:,}), {fleet['workers']} worker processes,"
        f" app writers on both databases",
        f"  fleet wall time {_number(fleet['fleet_seconds'], 1)} s: "
        + ", ".join(f"{name} {_number(seconds, 1)} s" for name, seconds in phases.items())
        + f" ({fleet['nights']} nights; seeding {_number(fleet['seed_seconds'], 1)} s before it)",
        f"  fleet rows/s (migrate phase) {_number(fleet['fleet_rows_per_second'])}; one agency of"
        f" {_number(single['rows'])} rows alone {_number(single['rows_per_second'])} rows/s"
        f" (ratio {_number(fleet['fleet_vs_single_agency'], 2)})",
        f"  write downtime p50 {_number(downtime['p50'], 2)} s, p95 {_number(downtime['p95'], 2)} s,"
        f" max {_number(downtime['max'], 2)} s; p95 by step (s): {steps or '-'}",
        f"  app writes {writes['acknowledged']:,} acknowledged, {writes['refused']:,} refused, {writes['lost']} lost;"
        f" throttle {_number(fleet['throttle_seconds'], 1)} s; {fleet['failures']} failures",
        f"  extrapolated: {extrapolation['plan_agencies']} agencies in {_number(extrapolation['seconds'], 0)} s"
        f" ({_number(extrapolation['seconds'] / 3600, 1)} h); {_number(extrapolation['agencies_per_day'])} agencies"
        " a day at this pace",
        f"  assumptions: {extrapolation['assumptions']}. {extrapolation['plan_note']}",
    ]
    for failure in fleet["failure_examples"]:
        reason = failure["reason"][:160]
        lines.append(f"  failure: {failure['agency']} {failure['kind']} at {failure['step']}: {reason}")
    return lines


def fleet_report_table(report: dict) -> str:
    """What `--only fleet` prints: the fleet's lines and its targets."""
    lines = [f"{'target':40}{'value':>10}  {'wanted':<9}result"]
    for key, label, wanted, test in FLEET_TARGETS:
        value = report["ratios"][key]
        result = {True: "met", False: "MISSED", None: "not measured"}[_met(value, test)]
        lines.append(f"{label:40}{_number(value, 2):>10}  {wanted:<9}{result}")
    load = report["machine"]["load_average_at_start"][0], report["machine"].get("load_average_at_end", ["?"])[0]
    return "\n".join([f"load average {load[0]} -> {load[1]}", *_fleet_lines(report), "", *lines])


def _rls_read_lines(report: dict) -> list[str]:
    rls = report["rls_read"]
    return [
        f"RLS read cost, {rls['leads']:,} leads over {rls['agencies']} agencies ({rls['agency_leads']:,} in the one"
        f" read), a page of 50 by created_at and the count, {rls['requests']} requests each:",
        f"  authenticated with claims p50 {rls['authenticated']['p50_ms']} ms, p95 {rls['authenticated']['p95_ms']} ms;"
        f" owner p50 {rls['owner']['p50_ms']} ms, p95 {rls['owner']['p95_ms']} ms",
    ]


def report_table(report: dict) -> str:
    """The human summary: throughput, targets, memory per agency size, changelist latency."""
    machine, changelist = report["machine"], report["changelist"]
    header = (
        f"Benchmark {report['generated_at']}: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_bytes'] / 2**30:.1f} GiB RAM, PostgreSQL {machine['postgresql']}, "
        f"load average {machine['load_average_at_start'][0]} -> {machine.get('load_average_at_end', ['?'])[0]}"
    )
    parallel = report["parallelism"]
    settings_line = (
        f"{parallel['migration_writers']} migration writers, {parallel['verification_workers']} verification"
        f" workers; each throughput figure is the median of {len(report['repeats'])} repeat(s)"
    )
    verification = report["verification"]
    return "\n".join(
        [
            header,
            settings_line,
            "",
            *_throughput_lines(report),
            f"verification verdict: {verification['verdict'] or verification['status']}"
            f" ({verification['checks']} checks)",
            "",
            *_scale_lines(report),
            "",
            *_memory_lines(report),
            "",
            f"changelist, {changelist['clients']:,} clients, filtered app_context=revos, "
            f"{changelist['requests']} requests: p50 {changelist['p50_ms']} ms, p95 {changelist['p95_ms']} ms",
            *_rls_read_lines(report),
            "",
            *_cutover_lines(report),
            "",
            *_reverse_capture_lines(report),
            "",
            *_fleet_lines(report),
            "",
            *_target_lines(report),
            *profile_lines(report),
            *_problem_lines(report),
        ]
    )


def report_write(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
