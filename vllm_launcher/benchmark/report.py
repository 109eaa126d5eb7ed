"""A run's result for people: the table (vLLM's figures, one column per concurrency level), the agent's TTFT
per turn, the server's view, and a picture: PNG with matplotlib where it is installed, else an HTML page
with inline SVG (no dependency)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from vllm_launcher.base import output
from vllm_launcher.base.errors import ConfigError

ROWS: tuple[tuple[str, str, str], ...] = (
    ("completed", "Successful requests", "{:d}"),
    ("failed", "Failed requests", "{:d}"),
    ("duration", "Duration (s)", "{:.2f}"),
    ("request_throughput", "Request throughput (req/s)", "{:.2f}"),
    ("request_goodput", "Request goodput (req/s)", "{:.2f}"),
    ("output_throughput", "Output token throughput (tok/s)", "{:.1f}"),
    ("total_token_throughput", "Total token throughput (tok/s)", "{:.1f}"),
    ("mean_ttft_ms", "Mean TTFT (ms)", "{:.1f}"),
    ("median_ttft_ms", "Median TTFT (ms)", "{:.1f}"),
    ("p99_ttft_ms", "P99 TTFT (ms)", "{:.1f}"),
    ("mean_tpot_ms", "Mean TPOT (ms)", "{:.2f}"),
    ("median_tpot_ms", "Median TPOT (ms)", "{:.2f}"),
    ("p99_tpot_ms", "P99 TPOT (ms)", "{:.2f}"),
    ("mean_itl_ms", "Mean ITL (ms)", "{:.2f}"),
    ("median_itl_ms", "Median ITL (ms)", "{:.2f}"),
    ("p99_itl_ms", "P99 ITL (ms)", "{:.2f}"),
    ("mean_e2el_ms", "Mean E2EL (ms)", "{:.1f}"),
    ("median_e2el_ms", "Median E2EL (ms)", "{:.1f}"),
    ("p99_e2el_ms", "P99 E2EL (ms)", "{:.1f}"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(int(value) if fmt == "{:d}" else float(value))
    except (TypeError, ValueError):
        return str(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def table(runs: list[dict[str, Any]]) -> str:
    """Each run's figures (one column per concurrency level), then per-turn TTFT and the server's view."""
    headers = ["", *[f"c={r.get('concurrency') or 'inf'}" for r in runs]]
    rows = [
        [label, *[_cell(r.get(key), fmt) for r in runs]]
        for key, label, fmt in ROWS
        if key != "request_goodput" or any(r.get(key) is not None for r in runs)
    ]
    server = [r.get("server") or {} for r in runs]
    if any(s.get("prefix_cache_hit_rate") is not None or s.get("preemptions") is not None for s in server):
        rows.append(
            ["Prefix cache hit rate (server)", *[_percent(s.get("prefix_cache_hit_rate")) for s in server]]
        )
        rows.append(["Preemptions (server)", *[_cell(s.get("preemptions"), "{:d}") for s in server]])
        rows.append(
            ["KV cache usage peak (server)", *[_percent(s.get("kv_cache_usage_peak")) for s in server]]
        )
    parts = [output.table(headers, rows)]
    for run in runs:
        turns = run.get("ttft_by_turn") or []
        if turns:
            parts.append(f"\nTTFT per turn (c={run.get('concurrency') or 'inf'}):")
            parts.append(
                output.table(
                    ["turn", "requests", "mean prompt tok", "mean TTFT ms", "median", "p99"],
                    [
                        [
                            t["turn"],
                            t["completed"],
                            f"{t['mean_prompt_tokens']:.0f}",
                            f"{t['mean_ttft_ms']:.1f}",
                            f"{t['median_ttft_ms']:.1f}",
                            f"{t['p99_ttft_ms']:.1f}",
                        ]
                        for t in turns
                    ],
                )
            )
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------ pictures

SERIES = ("ttft", "tpot", "itl", "e2el")
COLOURS = {"mean": "#1f77b4", "median": "#2ca02c", "p99": "#d62728"}


def _bars_svg(title: str, groups: list[str], series: dict[str, list[float]], unit: str) -> str:
    """A grouped bar chart as an SVG string: one group per label, one bar per series."""
    width, height, left, bottom, top = 460, 260, 56, 40, 30
    top_value = max([v for values in series.values() for v in values] + [1e-9])
    plot_w, plot_h = width - left - 10, height - bottom - top
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
    ]
    for tick in range(5):
        value = top_value * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{value:.3g}</text>')
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#eee"/>')
    parts.append(
        f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" '
        f'text-anchor="middle">{html.escape(unit)}</text>'
    )
    for g, label in enumerate(groups):
        x0 = left + g * group_w + group_w * 0.1
        for s, (name, values) in enumerate(series.items()):
            value = values[g]
            h = plot_h * value / top_value
            colour = COLOURS.get(name, "#888")
            parts.append(
                f'<rect x="{x0 + s * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w * 0.95:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{html.escape(name)} {value:.2f}</title></rect>'
            )
        parts.append(
            f'<text x="{left + g * group_w + group_w / 2:.1f}" y="{top + plot_h + 14}" '
            f'text-anchor="middle">{html.escape(label)}</text>'
        )
    for s, name in enumerate(series):
        parts.append(
            f'<rect x="{left + 8 + s * 70}" y="{height - 14}" width="10" height="10" '
            f'fill="{COLOURS.get(name, "#888")}"/><text x="{left + 22 + s * 70}" y="{height - 5}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def charts(runs: list[dict[str, Any]]) -> list[tuple[str, list[str], dict[str, list[float]], str]]:
    """What to draw: each latency's mean/median/p99 per concurrency level, and the agent's TTFT per turn."""
    groups = [f"c={r.get('concurrency') or 'inf'}" for r in runs]
    found = []
    for metric in SERIES:
        series = {
            stat: [float(r.get(f"{stat}_{metric}_ms") or 0.0) for r in runs]
            for stat in ("mean", "median", "p99")
        }
        found.append((f"{metric.upper()} per concurrency", groups, series, "ms"))
    for run in runs:
        turns = run.get("ttft_by_turn") or []
        if turns:
            found.append(
                (
                    f"TTFT per turn (c={run.get('concurrency') or 'inf'})",
                    [f"turn {t['turn']}" for t in turns],
                    {
                        stat: [float(t[f"{stat}_ttft_ms"]) for t in turns]
                        for stat in ("mean", "median", "p99")
                    },
                    "ms",
                )
            )
    return found


def html_report(result: dict[str, Any]) -> str:
    runs = result.get("runs") or [result]
    svgs = "\n".join(f"<figure>{_bars_svg(*chart)}</figure>" for chart in charts(runs))
    summary = html.escape(table(runs))
    title = html.escape(f"vllm-launch bench: {result.get('target', '')} ({result.get('workload', '')})")
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title><style>'
        "body{font-family:sans-serif;margin:2em} figure{display:inline-block;margin:0.5em} "
        "pre{background:#f6f6f6;padding:1em}</style></head><body>"
        f"<h1>{title}</h1><p>{html.escape(str(result.get('workload_description', '')))}</p>"
        f"{svgs}<pre>{summary}</pre></body></html>\n"
    )


def _png(result: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    drawn = charts(result.get("runs") or [result])
    columns = 2
    rows = (len(drawn) + 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(11, 3.6 * rows), squeeze=False)
    for index, (title, groups, series, unit) in enumerate(drawn):
        axis = axes[index // columns][index % columns]
        width = 0.8 / len(series)
        for s, (name, values) in enumerate(series.items()):
            axis.bar(
                [g + s * width for g in range(len(groups))],
                values,
                width,
                label=name,
                color=COLOURS.get(name),
            )
        axis.set_xticks([g + width for g in range(len(groups))], groups)
        axis.set_title(title)
        axis.set_ylabel(unit)
        axis.legend()
    for index in range(len(drawn), rows * columns):
        axes[index // columns][index % columns].axis("off")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


def write_plot(result: dict[str, Any], target: str) -> str:
    """Draw RESULT into TARGET: .png needs matplotlib (else the same pictures go to TARGET.html beside it);
    any other name gets the HTML report. Returns the path written."""
    path = Path(target).expanduser()
    try:
        if path.suffix.lower() == ".png":
            if _png(result, path):
                return str(path)
            path = path.with_suffix(".html")
        from vllm_launcher.base.atomic import write_text

        write_text(path, html_report(result))
    except OSError as exc:
        raise ConfigError(f"cannot write the plot: {exc.strerror or exc}", source=target) from None
    return str(path)
