"""The benchmark pages' table generator (docs/_ext/bench_tables.py), on its own.

The documentation quotes no measured figure by hand: its benchmark tables are rendered from
``benchmarks/results/*.json`` when the site is built. These tests check that the rendering
follows the files: a changed value changes the table, provenance (machine, date, commit) is
shown and says "not recorded" when a file lacks it, and every result file lands on a page.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "bench_tables", ROOT / "docs" / "_ext" / "bench_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_tables = load_generator()


def write(folder: Path, name: str, record: dict) -> None:
    (folder / name).write_text(json.dumps(record))


RECORD = {
    "machine": {"cpu": "Test CPU", "cpu_count": 2, "torch": "2.0", "git_commit": "abc1234"},
    "settings": {"repeats": 3},
    "rows": [{"backbone": "vgg16", "size": 512, "seconds": 0.6612},
             {"backbone": "resnet50", "size": 512, "seconds": 0.2191}],
}


def test_changed_value_changes_table(tmp_path):
    write(tmp_path, "speed_cpu.json", RECORD)
    before = bench_tables.render_pages(tmp_path)["speed"]
    assert "0.6612" in before and "0.2191" in before
    changed = json.loads(json.dumps(RECORD))
    changed["rows"][0]["seconds"] = 0.5
    write(tmp_path, "speed_cpu.json", changed)
    after = bench_tables.render_pages(tmp_path)["speed"]
    assert after != before
    assert "0.5\n" in after and "0.6612" not in after


def test_new_column_appears(tmp_path):
    record = json.loads(json.dumps(RECORD))
    record["rows"][1]["peak_bytes"] = 123456
    write(tmp_path, "speed_cpu.json", record)
    page = bench_tables.render_pages(tmp_path)["speed"]
    assert "peak\\_bytes" in page and "123456" in page


def test_provenance_recorded_and_missing(tmp_path):
    stamped = {**RECORD, "recorded": {"machine": "Box, 2 cores", "date": "2026-12-08T01:00:00Z",
                                      "commit": "0123456789abcdef"}}
    write(tmp_path, "speed_cpu.json", stamped)
    write(tmp_path, "threads_cpu.json", {"results": [{"workload": "predict", "seconds": 1.0}]})
    page = bench_tables.render_pages(tmp_path)["speed"]
    assert ":machine: Box, 2 cores" in page
    assert ":date: 2026-12-08T01:00:00Z" in page
    assert ":commit: 0123456789abcdef" in page
    threads = page[page.index("threads_cpu.json\n"):]
    assert threads.count(bench_tables.NOT_RECORDED) == 3


def test_old_files_commit_from_machine(tmp_path):
    write(tmp_path, "speed_cpu.json", RECORD)
    page = bench_tables.render_pages(tmp_path)["speed"]
    assert ":commit: abc1234" in page and ":date: not recorded" in page


@pytest.mark.parametrize("name, page", [("quality_horses_cpu.json", "quality"),
                                        ("huge_cpu.json", "huge"),
                                        ("something_new.json", "other")])
def test_every_file_lands_on_a_page(tmp_path, name, page):
    write(tmp_path, name, RECORD)
    pages = bench_tables.render_pages(tmp_path)
    assert f"\n{name}\n---" in pages[page]
    assert f"   {page}" in pages["index"]


def test_cells_are_inert(tmp_path):
    record = {"rows": [{"label": "- *bold* `x` |y| name_ pck@0.1", "value": float("nan")}]}
    write(tmp_path, "cli_cpu.json", record)
    page = bench_tables.render_pages(tmp_path)["cli"]
    assert "\\- \\*bold\\* \\`x\\` \\|y\\| name\\_ pck\\@0.1" in page  # no e-mail link
    assert "nan" in page


def test_committed_results_render():
    """Every committed result file renders, on the page its name says."""
    pages = bench_tables.render_pages(ROOT / "benchmarks" / "results")
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        stem = bench_tables.page_of(path.stem)[0]
        assert f"\n{path.name}\n---" in pages[stem]


def test_write_only_changed(tmp_path):
    results, out = tmp_path / "results", tmp_path / "out"
    results.mkdir()
    write(results, "speed_cpu.json", RECORD)
    bench_tables.write_benchmark_pages(results, out)
    (out / "stale.rst").write_text("old")
    mtime = (out / "speed.rst").stat().st_mtime_ns
    bench_tables.write_benchmark_pages(results, out)
    assert (out / "speed.rst").stat().st_mtime_ns == mtime
    assert not (out / "stale.rst").exists()
