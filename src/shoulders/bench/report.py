"""Where bench results go: a `## <Section>` of BENCHMARKS.md and `benchmarks/<name>.json`.

Each bench owns one section and replaces only that one, so benches run on different
days (or by different people: retrieval, serving) share one file. Sections are the text
from a line `## Title` to the next line starting `## ` (sub-headings use `###`). Both
files are written atomically; each section states the machine, the date, the library
versions and the exact command, so a number never travels without its context.
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
import re
import shlex
import sys
from pathlib import Path

import torch

from shoulders.utils.fs import atomic_write_json, atomic_write_text

PACKAGES = ("shoulders", "torch", "transformers", "peft", "accelerate", "numpy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info(device: torch.device | None = None) -> dict:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    info = {
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": _ram_gb(),
        "gpu": None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "versions": versions,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    return info


def command_line(argv: list[str] | None = None) -> str:
    return shlex.join(["shoulders", *(sys.argv[1:] if argv is None else argv)])


def header(title: str, result: dict) -> list[str]:
    """The lines every section starts with: command, machine, versions, date."""
    m = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    gpu = f"; GPU: {m['gpu']}" if m.get("gpu") else "; no GPU"
    load = f" (1-minute load average at start: {m['load_avg_1m']:.1f})" if m.get("load_avg_1m") is not None else ""
    lines = [f"## {title}", "", f"Command: `{result['command']}`  ",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM{gpu}; torch threads: "
             f"{m['torch_threads']}{load}  ",
             f"Date: {m['date']}; Python {m['python']}; {versions}; device {result['device']}, "
             f"dtype {result['dtype']}.", ""]
    if result.get("clock") == "cpu":
        lines += ["Times are **process CPU seconds**, not wall time (`--clock cpu`: the machine was shared with other "
                  "jobs; with one thread, CPU time counts the work done and not the waits for a core).", ""]
    return lines


def table(columns: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def replace_section(text: str, title: str, body: str) -> str:
    """`text` with its `## title` section replaced by `body` (appended if absent)."""
    body = body.rstrip() + "\n\n"
    section = re.compile(rf"^## {re.escape(title)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    if section.search(text):
        return section.sub(lambda _: body, text, count=1)
    return text.rstrip() + "\n\n" + body


def write_section(root: str | Path, title: str, markdown: str, json_name: str, result: dict) -> tuple[Path, Path]:
    """Replace the section in BENCHMARKS.md and write benchmarks/<json_name>.json."""
    root = Path(root)
    md_path, json_path = root / "BENCHMARKS.md", root / "benchmarks" / f"{json_name}.json"
    old = md_path.read_text(encoding="utf-8") if md_path.is_file() else "# Benchmarks\n"
    atomic_write_text(md_path, replace_section(old, title, markdown).rstrip() + "\n")
    atomic_write_json(json_path, result)
    for path in (md_path, json_path):
        os.chmod(path, 0o644)  # the atomic temp file is private (0600); a results file is not
    return md_path, json_path


def fmt_ratio(x: float) -> str:
    return "-" if x != x else f"{x:.2f}x"


def fmt_mb(n: float) -> str:
    return f"{n / 2**20:,.0f}" if n >= 2**20 else f"{n / 2**20:.2f}"


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"
