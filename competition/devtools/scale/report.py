"""`make bench-scale`: the run (bench-scale.json) and its tables."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from competition.devtools.scale.measure import (
    fit_from_codec,
    isic_series,
    kernel_rate,
    pixel_costs,
    real_size_tables,
    scale_series,
)
from competition.devtools.scale.projection import (
    CORES,
    TARGETS,
    growth,
    isic_projection,
    projection,
    ratios,
)
from competition.devtools.scale.stages import best_of


def run(
    sizes: list[int],
    pixel_images: int,
    workers: int,
    out: Path,
    keep: Path | None,
    preset: Path,
    isic_sizes: list[int] | None = None,
) -> dict:
    from competition.devtools.machine import machine

    scratch = Path(keep or tempfile.mkdtemp(prefix="bench-scale-"))
    scratch.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "workers": workers, "sizes": sizes}
    real = scratch / "real"
    real_size_tables(real)
    report["real"] = {
        "labels": best_of(3, "labels", root=str(real)),
        "submission": best_of(3, "submission", root=str(real)),
    }
    report["series"] = scale_series(scratch, sizes, workers)
    report["pixels"] = pixel_costs(scratch, pixel_images, workers)
    report["fit_zstd"] = fit_from_codec(scratch, workers)
    report["kernel"] = kernel_rate(scratch, preset)
    report["growth"] = growth(report)
    report["projection"] = projection(report)
    report["ratios"] = ratios(report)
    if isic_sizes:
        series = isic_series(scratch, isic_sizes, workers)
        report["isic_2024"] = {"series": series, "projection": isic_projection(series, workers)}
    from competition.fileio import write_text_atomic

    write_text_atomic(out, json.dumps(report, indent=2))
    return report


def verdict(name: str, value: float) -> str:
    target = TARGETS.get(name)
    if target is None:
        return ""
    upper = name.endswith(("seconds", "gib", "kib_per_image", "hours_kaggle_4cpu"))
    met = value <= target if upper else value >= target
    return f"{'ok' if met else 'MISSED'} ({'<=' if upper else '>='} {target:g})"


def table(report: dict) -> str:
    lines = ["| target | value | verdict |", "|---|---:|---|"]
    for name, value in report["ratios"].items():
        lines.append(f"| {name} | {value:,.3g} | {verdict(name, value)} |")
    sizes = sorted(report["series"], key=int)
    lines += [
        "",
        "| stage | "
        + " | ".join(f"{int(s):,} s / peak MiB" for s in sizes)
        + " | exponent time / memory |",
        "|---|" + "---:|" * (len(sizes) + 1),
    ]
    for stage, exps in report["growth"].items():
        runs = [report["series"][size][stage] for size in sizes]
        cells = [f"{run['seconds']:.2f} / {run['peak_bytes'] / 2**20:,.0f}" for run in runs]
        shown = [f"{v:.2f}" if v is not None else "-" for v in exps.values()]
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {' / '.join(shown)} |")
    lines += ["", *projection_table(report["projection"], "stage at 752,803 / 121,232 images")]
    if "isic_2024" in report:
        lines += ["", *isic_table(report["isic_2024"])]
    return "\n".join(lines)


def isic_table(isic: dict) -> list[str]:
    """ISIC 2024's stages measured at each size and projected to 401,059 lesions."""
    sizes = sorted(isic["series"], key=int)
    lines = [
        "| ISIC 2024 stage | " + " | ".join(f"{int(s):,} lesions: s" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for stage in ("index", "cache_raw", "cache_jpeg", "epoch_raw", "epoch_jpeg"):
        cells = [f"{isic['series'][s][stage]['seconds']:.2f}" for s in sizes]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return [*lines, "", *projection_table(isic["projection"], "at 401,059 lesions")]


def projection_table(rows: dict, title: str) -> list[str]:
    """Stage -> its projected time on each machine, peak memory (when
    projected) and disk."""
    peak = all("peak_gib" in row for row in rows.values())
    head = f"| {title} | " + " | ".join(CORES_SHOWN) + (" | peak GiB" if peak else "")
    lines = [head + " | disk GiB |", "|---|" + "---:|" * (len(CORES) + peak + 1)]
    for stage, row in rows.items():
        cells = [duration(row["seconds"][w]) for w in CORES]
        cells += [f"{row['peak_gib']:.2f}"] if peak else []
        cells.append(f"{row['disk_gib']:,.1f}")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines


CORES_SHOWN = ("8 cores", "Kaggle 4 CPUs")  # the CORES machines, as the tables name them


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
