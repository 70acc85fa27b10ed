"""Benchmark results record the machine and the source revision they were measured with."""

import os
import subprocess
from pathlib import Path

from polyskill.benchmarks.machine import describe, summary_line


def test_describe_names_the_cpu_count_and_the_checked_out_revision() -> None:
    m = describe(torch_threads=1)
    assert m["cpus"] == os.cpu_count()
    assert m["cpu"] and m["torch"]
    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True).stdout.strip()
    if head:  # a source tree without git reports "unknown"
        assert m["revision"].removesuffix("-dirty") == head
    line = summary_line(m)
    assert m["cpu"] in line and m["revision"][:12] in line and f"{m['cpus']} x" in line


def test_summary_line_reads_the_plain_string_of_older_result_files() -> None:
    assert summary_line("x86_64 , torch threads 1") == "x86_64 , torch threads 1"
