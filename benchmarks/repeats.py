"""Repeated measurements reduced to a median and a spread, so that no figure is one noisy sample.

Each repeat measures every tool once, one after the other, on the same agency; a ratio is taken
within a repeat (the two figures were measured minutes apart, under the same load) and the
ratios of the repeats are then reduced like any other figure.
"""

from __future__ import annotations

from statistics import median


def spread_of(values: list[float]) -> dict | None:
    """Median, lowest, highest and (highest - lowest) / median of the measured values; None if none."""
    measured = sorted(v for v in values if v is not None)
    if not measured:
        return None
    middle = median(measured)
    return {
        "median": round(middle, 3),
        "min": round(measured[0], 3),
        "max": round(measured[-1], 3),
        "spread_pct": round(100 * (measured[-1] - measured[0]) / middle, 1) if middle else None,
        "samples": len(measured),
        "of": len(values),
    }


def measurement_summary(repeats: list[dict]) -> dict:
    """One tool's repeats as one figure: the median repeat's details, the median seconds and rows/s.

    A repeat that failed is not averaged away: if any did, the summary is the first failed one,
    so its status and error are what the report shows.
    """
    failed = [r for r in repeats if r.get("seconds") is None]
    if failed:
        return {**failed[0], "repeats": len(repeats), "failed_repeats": len(failed)}
    ordered = sorted(repeats, key=lambda r: r["seconds"])
    summary = dict(ordered[(len(ordered) - 1) // 2])  # the median repeat (the lower one of an even count)
    seconds = spread_of([r["seconds"] for r in repeats])
    summary["seconds"] = seconds["median"]
    summary["seconds_spread"] = seconds
    if all(r.get("rows_per_second") for r in repeats):
        summary["rows_per_second"] = spread_of([r["rows_per_second"] for r in repeats])["median"]
    summary["repeats"] = len(repeats)
    return summary
