"""Benchmark pages written at build time from ``benchmarks/results/*.json``.

No figure is typed by hand: every table on the benchmark pages is rendered here from the result
files the benchmark scripts write. The renderer is generic (lists of records become tables,
nested records are flattened with dotted column names), so a new field or a new result file
shows up without editing this module. Each file's section states the machine, date and git
commit its result records ("not recorded" for files written before the benchmarks stamped
them). This module imports nothing from skhyper: ``tests/test_docs_tables.py`` tests it alone.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

NOT_RECORDED = "not recorded"

#: (page file stem, title, result-file name prefixes, introduction). A result file goes to the
#: first page one of whose prefixes starts its name; files matching none go to "other".
PAGES = (
    ("quality", "Segmentation and keypoint quality",
     ("quality_", "grid_iou", "multiscale", "keypoints"),
     "Scores on held-out images: Weizmann horses (standard split, 200 train / 128 test), "
     "Clothing Co-Parsing parts, the face keypoint development set. Written by "
     "``benchmarks/bench_quality.py``, ``bench_grid.py --part iou``, ``bench_multiscale.py`` "
     "and ``bench_keypoints.py``."),
    ("speed", "Speed and memory",
     ("speed_", "extraction", "predict_", "grid_speed", "threads", "fit_"),
     "Forward pass, ``transform``, folded ``predict``, fit and threads, on CPU. Ratios compare "
     "runs of the same call in one process; seconds depend on the machine and its load. Written "
     "by ``benchmarks/bench_speed.py``, ``bench_extraction.py``, ``bench_predict.py``, "
     "``bench_grid.py --part speed``, ``bench_threads.py`` and ``bench_fit.py``."),
    ("huge", "Huge images and collections", ("huge", "parallel", "large_grid"),
     "``predict_large`` on an 8192 x 8192 image (zarr to zarr) and with a location-grid model, "
     "and ``predict_collection`` over Dask workers. Written by ``benchmarks/bench_huge.py``, "
     "``bench_large_grid.py`` and ``bench_parallel.py``."),
    ("cli", "Command line", ("cli_",),
     "``skhyper predict`` against an in-process ``predict`` loop, and the memory allocator "
     "setting. Written by ``benchmarks/bench_cli.py``."),
    ("transformers", "Transformer backbones", ("transformers",),
     "Vision transformers (random weights: speed and memory, not accuracy) against "
     "EfficientNet-Lite0. Written by ``benchmarks/bench_transformers.py``."),
    ("export", "Export", ("export",),
     "ONNX Runtime against eager PyTorch for exported segmenters. Written by "
     "``benchmarks/bench_export.py``."),
    ("robustness", "Hostile inputs", ("hostile_inputs",),
     "How the public API answers wrong input: *clear* (an error naming the parameter), "
     "*handled*, *unclear*, *silent*. Written by ``benchmarks/hostile_inputs.py``."),
)
OTHER = ("other", "Other results", (), "Result files no other page claims.")

#: Top-level keys that describe the run rather than hold results.
META_KEYS = {"machine", "recorded", "created", "benchmark", "skhyper_commit", "skhyper_file"}
#: Record lists too long to be useful as a table (their summary is shown instead).
SKIP_KEYS = {"cases"}
MAX_CELL = 120
MAX_DEPTH = 3


def fmt(value) -> str:
    """One cell: numbers to 4 significant digits, lists of scalars joined, text escaped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return escape(str(value))


def escape(text: str) -> str:
    """Text made inert for a reStructuredText table cell (no markup, no list bullets)."""
    text = " ".join(text.split())
    if len(text) > MAX_CELL:
        text = text[: MAX_CELL - 1] + "…"
    text = text.replace("\\", "\\\\")
    for ch in "*`|_[]<>@":  # @: no e-mail links
        text = text.replace(ch, "\\" + ch)
    if text[:1] in "-+#=:.":
        text = "\\" + text
    return text


def is_scalar(value) -> bool:
    """Whether a value fits one cell (lists of scalars included)."""
    if isinstance(value, (list, tuple)):
        return len(value) <= 8 and all(is_scalar(v) and not isinstance(v, (list, tuple))
                                       for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def flatten(record: dict, prefix: str = "", depth: int = 1) -> dict:
    """Scalar fields of a record, nested records' fields under dotted names."""
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if is_scalar(value):
            flat[name] = value
        elif isinstance(value, dict) and depth < MAX_DEPTH:
            flat.update(flatten(value, name + ".", depth + 1))
    return flat


def record_table(rows: list[dict], key_name: str | None = None) -> tuple[list, list]:
    """Header and body of a table of records; ``key_name`` heads a first column of keys."""
    flats = [flatten(r) for r in rows]
    header: list[str] = []
    for flat in flats:
        header += [k for k in flat if k not in header]
    header = [h for h in header if h != "__key__"]
    if key_name is not None:
        header = ["__key__", *header]
    body = [[fmt(flat.get(h)) for h in header] for flat in flats]
    return [key_name if h == "__key__" else h for h in header], body


def list_table(caption: str, header: list[str], body: list[list[str]]) -> str:
    """A ``list-table`` directive."""
    lines = [f".. list-table:: {escape(caption)}", "   :header-rows: 1", ""]
    for row in [[escape(h) for h in header], *body]:
        lines.append(f"   * - {row[0] or ' '}")
        lines += [f"     - {cell or ' '}" for cell in row[1:]]
    return "\n".join(lines) + "\n"


def provenance(record: dict) -> dict[str, str]:
    """Machine, date and commit a result records; ``NOT_RECORDED`` for what it lacks."""
    stamp = record.get("recorded") if isinstance(record.get("recorded"), dict) else {}
    machine = record.get("machine") if isinstance(record.get("machine"), dict) else {}
    described = stamp.get("machine")
    if not described and machine:
        parts = [machine.get("device_name") or machine.get("cpu"),
                 f"{machine['cpu_count']} cores" if machine.get("cpu_count") else None,
                 f"torch {machine['torch']}" if machine.get("torch") else None,
                 machine.get("platform")]
        described = ", ".join(p for p in parts if p)
    date = stamp.get("date") or record.get("created") or machine.get("date")
    commit = stamp.get("commit") or machine.get("git_commit") or record.get("skhyper_commit")
    return {"machine": described or NOT_RECORDED, "date": date or NOT_RECORDED,
            "commit": commit or NOT_RECORDED}


def result_section(name: str, record: dict) -> str:
    """The section of one result file: provenance, then one table per block of results."""
    title = name if re.fullmatch(r"[\w.-]+", name) else escape(name)  # plain file names
    out = [title, "-" * len(title), ""]
    prov = provenance(record)
    out += [f":machine: {escape(prov['machine'])}", f":date: {escape(prov['date'])}",
            f":commit: {escape(prov['commit'])}", ""]
    if not isinstance(record, dict):
        return "\n".join(out) + "\n"
    scalars = {}
    for key, value in record.items():
        if key in META_KEYS or key in SKIP_KEYS:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            header, body = record_table(value)
            out.append(list_table(key, header, body))
        elif isinstance(value, dict) and value and all(isinstance(v, dict)
                                                       for v in value.values()):
            rows = [{"__key__": k, **v} for k, v in value.items()]
            header, body = record_table(rows, key_name="")
            out.append(list_table(key, header, body))
        elif isinstance(value, dict):
            for k, v in flatten(value, key + ".").items():
                scalars[k] = v
        elif is_scalar(value):
            scalars[key] = value
    if scalars:
        body = [[escape(k), fmt(v)] for k, v in scalars.items()]
        out.append(list_table("settings and summary figures", ["field", "value"], body))
    return "\n".join(out) + "\n"


def page_of(name: str) -> tuple:
    """The page a result file belongs to."""
    for page in PAGES:
        if any(name.startswith(prefix) for prefix in page[2]):
            return page
    return OTHER


def render_pages(results_dir: Path) -> dict[str, str]:
    """Every benchmark page's reStructuredText, by file stem (``index`` included)."""
    files = sorted(Path(results_dir).glob("*.json"))
    grouped: dict[str, list[Path]] = {}
    for path in files:
        grouped.setdefault(page_of(path.stem)[0], []).append(path)
    pages = {}
    entries = []
    for stem, title, _, intro in (*PAGES, OTHER):
        if stem not in grouped:
            continue
        entries.append(stem)
        text = [title, "=" * len(title), "", intro, ""]
        for path in grouped[stem]:
            text.append(result_section(path.name, json.loads(path.read_text())))
        pages[stem] = "\n".join(text)
    pages["index"] = "\n".join([
        "Benchmarks", "==========", "",
        "Every table on these pages is generated when the documentation is built, from the",
        "JSON files the scripts in ``benchmarks/`` write to ``benchmarks/results/``. Each",
        "result states the machine, date and git commit it was measured on; files written",
        "before the benchmarks recorded them say *not recorded*. Timings come from shared",
        "2-core CPU machines unless the machine says otherwise: compare ratios within one",
        "file, not seconds across files.", "",
        ".. toctree::", "   :maxdepth: 1", "", *[f"   {e}" for e in entries], ""])
    return pages


def write_benchmark_pages(results_dir: Path, out_dir: Path) -> list[str]:
    """Write the benchmark pages into ``out_dir`` (only files whose text changed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = render_pages(results_dir)
    for stem, text in pages.items():
        path = out_dir / f"{stem}.rst"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    for stale in out_dir.glob("*.rst"):
        if stale.stem not in pages:
            stale.unlink()
    return sorted(pages)
