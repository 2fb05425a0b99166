"""Reports of the benchmark: ``latency.md``, ``latency.png``, each student's ``latency.json`` and
model card, and the summary on stdout."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from ...errors import ConfigError
from ...reporting.model_card import LATENCY_FILE, write_model_card
from ...utils import atomic_write_json, atomic_write_text, plural
from .candidates import Candidate
from .results import student_result

ROW_COLUMNS = ["model", "role", "task", "reference", "runtime", "batch_size", "median_ms", "p90_ms", "sequences_per_second",
               "parameters", "compression_vs_reference", "metric", "metric_value", "speedup_vs_reference"]
#: tabulate float format per column of the rows table
ROW_FORMATS = {"median_ms": ".3f", "p90_ms": ".3f", "sequences_per_second": ".1f", "compression_vs_reference": ".1f",
               "metric_value": ".2f", "speedup_vs_reference": ".1f"}
#: columns of the goals table in ``latency.md``
GOAL_COLUMNS = ["reference", "speedup_torch_vs_reference", "speedup_goal", "speedup_goal_met", "onnx_fp32_speedup_vs_torch",
                "onnx_fp32_not_slower_than_torch", "int8_speedup_vs_fp32", "int8_faster_than_fp32",
                "compression_vs_reference", "compression_goal_met", "all_met"]
RUNTIME_STYLE = {"torch-fp32": ("o", "tab:blue"), "onnx-fp32": ("s", "tab:orange"), "onnx-int8": ("^", "tab:green")}
REFERENCE_STYLES = ["--", ":", "-."]


def check_plotting() -> None:
    """Raises:
        ConfigError: matplotlib (needed for ``latency.png``) is not installed.
    """
    try:
        import matplotlib  # noqa: F401  (deferred: ~1.5 s to import, only needed for the plot)
    except ImportError as e:
        raise ConfigError("latency.png needs matplotlib: pip install matplotlib") from e


def weights_summary(references: Sequence[dict]) -> str:
    """``"random"``, ``"pretrained"`` or, when they differ, each reference model's: ``"mBERT-base random, ..."``."""
    kinds = {i["weights"] for i in references}
    if len(kinds) == 1:
        return kinds.pop()
    return ", ".join(dict.fromkeys(f"{i['model']} {i['weights']}" for i in references))


# --------------------------------------------------------------------------------------------
# latency.md


def _rows_table(rows: pd.DataFrame) -> str:
    """The rows as a Markdown table (ms with 3 decimals, missing values as "-")."""
    cols = [c for c in ROW_COLUMNS if c in rows.columns]
    df = rows[cols].astype(object)
    df = df.where(df.notna(), None)  # tabulate writes None as missingval, NaN as "nan"
    return df.to_markdown(index=False, floatfmt=[ROW_FORMATS.get(c, "g") for c in cols], missingval="-")


def _per_batch(ratios: dict) -> str:
    """``{"1": 2.5, "32": 1.4}`` -> ``"b1 2.50x, b32 1.40x"``."""
    return ", ".join(f"b{b} {x:.2f}x" for b, x in ratios.items())


def _header(result: dict) -> list[str]:
    m, st = result["machine"], result["settings"]
    return ["# Batch-inference latency", "",
            f"Machine: {m['cpu']} ({m['physical_cores']} physical / {m['logical_cores']} logical cores), "
            f"{plural(m['threads'], 'thread')}; {m['platform']}; Python {m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
            f"transformers {m['transformers']}, numpy {m['numpy']}.", "",
            f"Settings: batch sizes {', '.join(map(str, st['batch_sizes']))}; sequence length {st['sequence_length']} "
            f"(random token ids, no padding); {st['warmup']} warm-up and {st['repeats']} timed calls per cell"
            f"{' (--quick: noisy)' if st['quick'] else ''}; seed {st['seed']}. Latency is the wall time of one call on "
            "one batch (median and 90th percentile, ms); sequences/s = batch size / median.", ""]


def _references_section(references: Sequence[dict]) -> list[str]:
    lines = ["## Reference models", "",
             "Each student and teacher is compared with the reference model of its family (mBERT-base or XLM-R-base) "
             "with the same task head, in the same runtime and at the same batch size.", ""]
    for i in references:
        lines.append(f"- {i['name']}: {i['source']}; weights {i['weights']} ({i['note']}); {i['parameters']:,} "
                     f"parameters with the task head (the paper's count: {i['paper_parameters'] / 1e6:.1f}M).")
    return lines + [""]


def _goals_section(goals: dict) -> list[str]:
    g = goals.get("students", {})
    if not g:
        return []
    gt = pd.DataFrame({k: {c: _per_batch(v[c]) if isinstance(v.get(c), dict) else v.get(c) for c in GOAL_COLUMNS}
                       for k, v in g.items()}).T
    return [f"## Goals (batch size {goals['batch_size']})", "", gt.to_markdown(floatfmt=".2f", missingval="-"), ""]


def render_markdown(result: dict) -> str:
    """``latency.md``: machine and settings, the reference models (source, weights), all rows, speedups
    against the reference model pivoted by model x (runtime, batch size), and the goals."""
    rows = pd.DataFrame(result["rows"])
    piv = rows.pivot_table(index="model", columns=["runtime", "batch_size"], values="speedup_vs_reference", sort=False)
    piv.columns = [f"{rt} b{b}" for rt, b in piv.columns]
    lines = [*_header(result), *_references_section(result["references"]),
             "## All measurements", "", _rows_table(rows), "",
             "## Speedup against the reference model (same runtime and batch size)", "",
             piv.to_markdown(floatfmt=".1f", missingval="-"), "", *_goals_section(result.get("goals", {}))]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# latency.png


def _short_count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def _plot_points(ax, pts: list[dict], panel: tuple[str, str] | None) -> list[str]:
    """Scatter ``pts`` (latency against metric, or per model); returns the model names in order."""
    names = list(dict.fromkeys(r["model"] for r in pts))
    pmin = min((r["parameters"] for r in pts), default=1)
    labelled: set[str] = set()
    for r in pts:
        marker, colour = RUNTIME_STYLE[r["runtime"]]
        y = r["metric_value"] if panel is not None else names.index(r["model"])
        ax.scatter(r["median_ms"], y, s=30 + 120 * math.log10(max(r["parameters"], 1) / pmin + 1), marker=marker,
                   color=colour, alpha=0.8, edgecolors="black", linewidths=0.5, label=r["runtime"])
        if r["model"] not in labelled:
            labelled.add(r["model"])
            ax.annotate(f"{r['model']} ({_short_count(r['parameters'])})", (r["median_ms"], y), textcoords="offset points",
                        xytext=(6, 6), fontsize=7)
    return names


def _plot_panel(ax, rows: list[dict], panel: tuple[str, str] | None, refs: list[dict]) -> None:
    """One panel: latency (log x) against the metric (or, when no model has one, per model); point
    size by parameters, marker/colour by runtime, one label per model; each reference model of the
    panel as vertical lines per runtime (colour by runtime, line style by reference model)."""
    others = [r for r in rows if r["role"] != "reference"]
    pts = others if panel is None else [r for r in others if (r["task"], r["metric"]) == panel and r["metric_value"] is not None]
    names = _plot_points(ax, pts, panel)
    styles = {n: REFERENCE_STYLES[i % len(REFERENCE_STYLES)] for i, n in enumerate(dict.fromkeys(r["model"] for r in refs))}
    for r in refs:
        ax.axvline(r["median_ms"], color=RUNTIME_STYLE[r["runtime"]][1], linestyle=styles[r["model"]], linewidth=1,
                   label=f"{r['model']} {r['runtime']}")
    ax.set_xscale("log")
    ax.set_xlabel("latency per batch (ms, log scale)")
    if panel is None:
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title("latency (no model has a recorded metric)", fontsize=9)
    else:
        ax.set_ylabel(f"{panel[1]} (%)")
        ax.set_title(f"{panel[0]}: {panel[1]} against latency", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="best", markerscale=0.6)
    ax.grid(True, which="both", alpha=0.3)


def _panel_references(rows: list[dict], panel: tuple[str, str] | None) -> list[dict]:
    """Rows of the reference models that the panel's models are compared with (all of them when none)."""
    names = {r["reference"] for r in rows
             if r["role"] != "reference" and (panel is None or (r["task"], r["metric"]) == panel)}
    refs = [r for r in rows if r["role"] == "reference"]
    return [r for r in refs if r["model"] in names] or refs


def write_plot(result: dict, path: Path) -> None:
    """``latency.png``: one panel per (task, metric), at the largest batch size; point size by
    parameters, marker/colour by runtime; the reference models (no metric) as vertical lines.
    Saved to a temporary name in the same folder, then ``os.replace``."""
    import matplotlib  # deferred: ~1.5 s to import, only needed for the plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred with matplotlib, after choosing the headless backend

    st = result["settings"]
    b = max(st["batch_sizes"])
    rows = [r for r in result["rows"] if r["batch_size"] == b]
    panels = sorted({(r["task"], r["metric"]) for r in rows if r["role"] != "reference" and r["metric_value"] is not None})
    panels = panels or [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _plot_panel(ax, rows, panel, _panel_references(rows, panel))
    undrawn = sorted({r["model"] for r in rows if r["role"] != "reference"}
                     - {r["model"] for r in rows if r["metric_value"] is not None})
    if panels != [None] and undrawn:
        fig.text(0.01, 0.01, "no metric recorded, not drawn: " + ", ".join(undrawn), fontsize=7)
    fig.suptitle(f"Batch-inference latency at batch size {b}, sequence length {st['sequence_length']}, "
                 f"{plural(st['threads'], 'thread')}\nmedian of {st['repeats']} runs; reference models (vertical lines, "
                 f"{weights_summary(result['references'])} weights, no metric) per runtime", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# files and stdout


def write_outputs(result: dict, out_dir: Path, students: Sequence[Candidate]) -> None:
    """Write ``latency.json``/``.md``/``.png`` into ``out_dir`` and each student's ``latency.json``
    (:func:`~.results.student_result`) and model card."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "latency.json", result)
    atomic_write_text(out_dir / "latency.md", render_markdown(result))
    write_plot(result, out_dir / "latency.png")
    for c in students:
        atomic_write_json(c.student_dir / LATENCY_FILE, student_result(result, c))
        write_model_card(c.student_dir)


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_summary(result: dict, out_dir: Path) -> None:
    """A few lines on stdout at the largest batch size: every row (median and p90 in ms, sequences/s,
    speedup against its reference model), and each student's goals."""
    g = result["goals"]
    b = g["batch_size"]
    st = result["settings"]
    print(f"latency at batch size {b}, sequence length {st['sequence_length']}, {plural(st['threads'], 'thread')} on "
          f"{result['machine']['cpu']}; reference model weights: {weights_summary(result['references'])}")
    for r in result["rows"]:
        if r["batch_size"] == b:
            print(f"  {r['model']:<40} {r['runtime']:<10} median {r['median_ms']:10.3f} ms  p90 {r['p90_ms']:10.3f} ms  "
                  f"{r['sequences_per_second']:10.1f} seq/s  speedup {_fmt(r['speedup_vs_reference'])}x vs {r['reference']}")
    for name, v in g["students"].items():
        goal = "" if v["speedup_goal"] is None else f" (goal >= {v['speedup_goal']:g}x: {v['speedup_goal_met']})"
        print(f"  goals {name}: torch speedup {_fmt(v['speedup_torch_vs_reference'])}x vs {v['reference']}{goal}; "
              f"ORT fp32 not slower than torch: {v['onnx_fp32_not_slower_than_torch']}; int8 vs fp32 "
              f"{_per_batch(v['int8_speedup_vs_fp32'])} ({v['int8_faster_than_fp32']}); compression "
              f"{v['compression_vs_reference']:.1f}x (goal >= {v['compression_goal']:g}x: {v['compression_goal_met']})")
    print(f"wrote {out_dir / 'latency.json'}, {out_dir / 'latency.md'}, {out_dir / 'latency.png'}")
