"""`make bench-gpu`: the data of each setup (a synthetic stand-in, its index
and cache, made here without Keras), one process per backend, the ratios
against their targets, the table, bench-gpu.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from competition.backend import BACKENDS
from competition.backend import installed as backend_installed
from competition.config import load_config
from competition.data.cache.build import build_split
from competition.devtools.accelerator.setups import Options, Setup, setups
from competition.devtools.machine import host
from competition.fileio import write_text_atomic
from competition.pipeline.prepare import ensure_index

KIT_VS_MEMORY = 0.9  # on an accelerator: the pipeline keeps 90% of the device's speed
# On an H200, the headline setup (EfficientNetB0, 256 px, batch 128, bf16) on JAX:
# 1.2x timm's compiled training there, and prediction images/s.
H200 = {"fit_kit_images_per_s": 4400, "predict_kit_images_per_s": 14000}
REFERENCE = "tensorflow"  # backend ratios are against the default backend
FLAGS = ("images", "steps", "rounds")  # the options the measuring process takes


def installed() -> tuple[str, ...]:
    return tuple(b for b in BACKENDS if backend_installed(b))


def prepare(setup: Setup) -> None:
    """The setup's synthetic stand-in, index and training cache."""
    config = load_config(setup.config, setup.overrides)
    ensure_index(config)
    build_split(config.cache, "train", config.data.workers)


def measure(backend: str, chosen: list[Setup], o: Options) -> dict:
    """One backend's measurements from a process of its own; its error's
    last lines when it fails (the other backends are still measured)."""
    spec = {"setups": [asdict(s) for s in chosen], **{k: getattr(o, k) for k in FLAGS}}
    with tempfile.TemporaryDirectory() as folder:
        spec_path, out = Path(folder) / "spec.json", Path(folder) / "out.json"
        spec_path.write_text(json.dumps(spec))
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "competition.devtools.accelerator", str(spec_path), str(out)],
            env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-12:]}
        return {**json.loads(out.read_text()), "seconds": round(time.perf_counter() - started)}


def ratios(report: dict) -> dict:
    """Per backend and setup: kit / in-memory for fit and predict, the cores
    the fit needs fed; per setup: each backend against the default one."""
    out = {}
    backends = {b: r for b, r in report["backends"].items() if "setups" in r}
    for backend, result in backends.items():
        for setup, m in result["setups"].items():
            at = f"[{backend}, {setup}]"
            out[f"fit_kit_vs_memory{at}"] = m["fit_kit_images_per_s"] / m["fit_memory_images_per_s"]
            out[f"predict_kit_vs_memory{at}"] = (
                m["predict_kit_images_per_s"] / m["predict_memory_images_per_s"]
            )
            loader = "load" if m["augment_on"] == "graph" else "load_augment"
            out[f"cores_to_feed_fit{at}"] = (
                m["fit_kit_images_per_s"] / m[f"host_{loader}_images_per_core_s"]
            )
    if REFERENCE in backends:
        for backend, result in backends.items():
            if backend == REFERENCE:
                continue
            for setup, m in result["setups"].items():
                base = backends[REFERENCE]["setups"][setup]
                for what in ("fit", "predict"):
                    key = f"{what}_kit_images_per_s"
                    out[f"{what}_{backend}_vs_{REFERENCE}[{setup}]"] = m[key] / base[key]
    return out


def verdicts(report: dict) -> list[str]:
    """Each target, met or missed, where it applies (an accelerator; the H200's
    rates on JAX); on a CPU machine the ratios are reported, not targets."""
    lines = []
    for backend, result in report["backends"].items():
        if not result.get("accelerator"):
            continue
        for name, value in report["ratios"].items():
            if "_kit_vs_memory[" in name and f"[{backend}," in name:
                met = "ok" if value >= KIT_VS_MEMORY else "MISSED"
                lines.append(f"{name} = {value:.3f}: {met} (>= {KIT_VS_MEMORY})")
        if backend == "jax" and "H200" in result["accelerator"]:
            headline = next(iter(result["setups"].values()))
            for key, target in H200.items():
                met = "ok" if headline[key] >= target else "MISSED"
                lines.append(f"{key} on the H200 = {headline[key]:,.0f}: {met} (>= {target:,})")
    return lines


def run(config: str | None, overrides: list[str], o: Options, out: Path) -> dict:
    chosen = setups(config, overrides, o)
    for setup in chosen:
        print(f"bench-gpu: data for {setup.name}", flush=True)
        prepare(setup)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python -m competition", *sys.argv[1:]]),
        "machine": host(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(o).items()},
        "backends": {},
    }
    for backend in o.backends:
        print(f"bench-gpu: measuring on {backend}", flush=True)
        report["backends"][backend] = measure(backend, chosen, o)
    report["ratios"] = ratios(report)
    report["targets"] = verdicts(report)
    write_text_atomic(out, json.dumps(report, indent=2))
    return report


COLUMNS = (  # (measurement, heading, format)
    ("fit_kit_images_per_s", "fit kit img/s", ",.1f"),
    ("fit_memory_images_per_s", "fit in-memory img/s", ",.1f"),
    ("fit_compile_s", "first step compile s", ".1f"),
    ("predict_kit_images_per_s", "predict kit img/s", ",.1f"),
    ("predict_memory_images_per_s", "predict in-memory img/s", ",.1f"),
    ("host_load_images_per_core_s", "host load img/core-s", ",.0f"),
    ("host_load_augment_images_per_core_s", "host load+augment img/core-s", ",.0f"),
)


def table(report: dict) -> str:
    lines = [
        "| backend | setup | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---|---|" + "---:|" * len(COLUMNS),
    ]
    for backend, result in report["backends"].items():
        if "error" in result:
            lines.append(f"| {backend} | failed: {result['error'][-1][:120]} |")
            continue
        for setup, m in result["setups"].items():
            cells = " | ".join(format(m[key], f) for key, _, f in COLUMNS)
            lines.append(f"| {result['keras']} | {setup} | {cells} |")
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in report["ratios"].items()]
    if report["targets"]:
        lines += ["", *report["targets"]]
    return "\n".join(lines)
