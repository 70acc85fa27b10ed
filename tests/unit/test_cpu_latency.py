"""The CPU wake-up latency request: what it writes, and the errors a user sees."""

from __future__ import annotations

import struct

import pytest

from polyskill.server.app import main as serve_main
from polyskill.server.config import ServerConfig
from polyskill_client import cpu_latency
from polyskill_client.cpu_latency import CpuLatencyRequest


def test_the_request_writes_one_s32_and_holds_the_file_until_closed(tmp_path) -> None:
    device = tmp_path / "cpu_dma_latency"  # a plain file stands in for the PM QoS device
    device.touch()
    with CpuLatencyRequest(25, device=str(device)) as request:
        assert request._fd is not None
        assert struct.unpack("i", device.read_bytes()) == (25,)
    assert request._fd is None
    request.close()  # closing twice is harmless


def test_a_device_that_cannot_be_opened_says_what_is_needed(tmp_path) -> None:
    with pytest.raises(OSError, match=r"cpu_dma_latency.*write access.*-1 \(off\)"):
        CpuLatencyRequest(0, device=str(tmp_path / "missing" / "cpu_dma_latency"))
    with pytest.raises(ValueError, match=">= 0 microseconds, got -5"):
        CpuLatencyRequest(-5)


def test_a_setting_of_minus_one_holds_nothing_and_below_is_an_error(tmp_path, monkeypatch
                                                                     ) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.touch()
    monkeypatch.setattr(cpu_latency, "DEVICE", str(device))
    with cpu_latency.hold_if_set(-1):
        assert device.read_bytes() == b""  # off: nothing written
    with cpu_latency.hold_if_set(7):
        assert struct.unpack("i", device.read_bytes()) == (7,)
    with pytest.raises(ValueError, match=r"--cpu-latency-us must be >= 0 \(or -1 for off\)"):
        cpu_latency.hold_if_set(-2)


def test_the_setting_is_checked_and_comes_from_the_environment() -> None:
    assert ServerConfig().cpu_latency_us == -1  # off by default
    assert ServerConfig.from_env({"POLYSKILL_CPU_LATENCY_US": "0"}).cpu_latency_us == 0
    with pytest.raises(ValueError, match="cpu_latency_us must be >= 0 \\(or -1 for off\\)"):
        ServerConfig(cpu_latency_us=-2)


def test_serve_stops_before_loading_anything_when_the_request_is_refused(
        tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cpu_latency, "DEVICE", str(tmp_path / "no" / "cpu_dma_latency"))
    code = serve_main(["--checkpoint", str(tmp_path / "never-read"), "--port", "0",
                       "--cpu-latency-us", "0"])
    assert code == 2
    assert "cannot request a CPU wake-up latency of 0 us" in capsys.readouterr().err


def test_bench_serve_reports_a_refused_request_before_measuring(tmp_path, monkeypatch,
                                                                capsys) -> None:
    from polyskill.benchmarks.serve import main as bench_main

    monkeypatch.setattr(cpu_latency, "DEVICE", str(tmp_path / "no" / "cpu_dma_latency"))
    assert bench_main(["--cpu-latency-us", "0", "--out", str(tmp_path / "r.json")]) == 2
    assert "bench serve: error: cannot request" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
