"""The benchmark's one table and its target checks, from vendor_compare results (pure Python)."""

from __future__ import annotations

from typing import Any

LINE_LABELS = {
    "floor": "raw cffi floor",
    "run": "rkrt Session.run",
    "bind": "rkrt zero-copy (bind)",
    "rknnlite": "RKNNLite.inference",
}
RSS_TARGET_CALLS = 100_000
RSS_LIMIT_BYTES = 1 << 20


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _rss(line: dict[str, Any]) -> str:
    growth = line["rss_growth_bytes"] / 1024
    return f"{growth:+.0f} KiB/{line['rss_calls']:,}"


def overhead_ratio(model: dict[str, Any], kind: str) -> tuple[float, bool] | None:
    """RKNNLite's time above the floor over `kind`'s, and whether that is only a lower bound.

    A line whose overhead is within the block-to-block spread cannot be resolved from the
    floor; the spread is then the denominator and the ratio a lower bound.
    """
    over = model.get("over_floor_us", {})
    if "rknnlite" not in over or kind not in over:
        return None
    spread = model.get("over_floor_spread_us", {}).get(kind, 0.0)
    bounded = over[kind] <= spread
    denominator = spread if bounded else over[kind]
    if denominator <= 0:
        return None
    return over["rknnlite"] / denominator, bounded


def _ratio(value: tuple[float, bool] | None) -> str:
    if value is None:
        return "-"
    ratio, bounded = value
    return f"> {ratio:.0f}x" if bounded else f"{ratio:.1f}x"


def format_table(lanes: list[tuple[str, dict[str, Any]]]) -> str:
    """One table over lanes and models; ratios are medians of per-block ratios of one run."""
    header = (
        "lane", "model", "line", "median us", "p99 us", "x floor", "us over floor",
        "RKNNLite/line time", "RKNNLite/line overhead", "C calls/inf", "RSS growth/calls",
    )  # fmt: skip
    rows = [header]
    for lane, result in lanes:
        for model in result["models"]:
            ratios, over = model["ratios"], model.get("over_floor_us", {})
            for kind, line in model["lines"].items():
                to_floor = 1.0 if kind == "floor" else ratios.get(f"{kind}/floor")
                vs_lite = None if kind == "rknnlite" else ratios.get(f"rknnlite/{kind}")
                lite_over = None if kind in ("rknnlite", "floor") else overhead_ratio(model, kind)
                rows.append((
                    lane, model["name"], LINE_LABELS[kind],
                    _fmt(line["median_us"], ".1f"), _fmt(line["p99_us"], ".1f"),
                    _fmt(to_floor, ".2f", "x"), _fmt(over.get(kind), "+.1f"),
                    _fmt(vs_lite, ".1f", "x"), _ratio(lite_over),
                    _fmt(line["c_calls_per_inference"], ".0f"), _rss(line),
                ))  # fmt: skip
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def target_checks(lanes: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for every target the lanes' results can judge.

    The RKNNLite targets are about per-call overhead: each binding's time above the raw floor
    (which holds the runtime's own work), compared within one run.
    """
    checks = []
    for lane, result in lanes:
        for model in result["models"]:
            ratios, lines, where = model["ratios"], model["lines"], f"{lane}, {model['name']}"
            over = model.get("over_floor_us", {})
            for kind, bound in (("run", 1.5), ("bind", 1.2)):
                r = ratios.get(f"{kind}/floor")
                if r is not None:
                    checks.append((
                        f"{LINE_LABELS[kind]} <= {bound}x floor ({where})",
                        f"{r:.2f}x", "PASS" if r <= bound else "FAIL",
                    ))  # fmt: skip
            for kind, bound in (("run", 10.0), ("bind", 20.0)):
                r = overhead_ratio(model, kind)
                if r is not None:
                    measured = (
                        f"{_ratio(r)} (RKNNLite {over['rknnlite']:+.1f} us, rkrt "
                        f"{over[kind]:+.1f} us over floor; whole call "
                        f"{ratios[f'rknnlite/{kind}']:.1f}x)"
                    )
                    checks.append((
                        f"{LINE_LABELS[kind]} >= {bound:.0f}x less overhead than RKNNLite "
                        f"({where})", measured, "PASS" if r[0] >= bound else "FAIL",
                    ))  # fmt: skip
            lite = lines.get("rknnlite")
            for kind in ("run", "bind"):
                line = lines.get(kind)
                if line is None:
                    continue
                full = line["rss_calls"] >= RSS_TARGET_CALLS
                growth = line["rss_growth_bytes"]
                measured = f"{growth / 1024:+.0f} KiB over {line['rss_calls']:,} calls"
                if lite is not None:
                    measured += f" (RKNNLite {lite['rss_growth_bytes'] / 1024:+.0f} KiB)"
                verdict = "n/a (short)"
                if full:
                    verdict = "PASS" if growth < RSS_LIMIT_BYTES else "FAIL"
                checks.append((
                    f"{LINE_LABELS[kind]} RSS growth < 1 MiB / 1e5 calls ({where})",
                    measured, verdict,
                ))  # fmt: skip
    return checks


def format_checks(checks: list[tuple[str, str, str]]) -> str:
    width = max((len(c[0]) for c in checks), default=0)
    return "\n".join(
        f"{verdict:11} {target.ljust(width)}  {measured}" for target, measured, verdict in checks
    )
