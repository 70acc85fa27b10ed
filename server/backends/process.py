"""A backend whose model runs in its own worker process (`--model-process`).

Why: under load the server's CPU is one core however its threads are arranged, because the GIL
serialises the event loop (gRPC, validation, session bookkeeping) and the model thread
(docs/benchmarks.md, serving, "Where the time goes"). With the model in a child process, the
parent's model thread waits on a pipe with the GIL released while the child computes, so request
handling and the forward pass run on two cores at once. The price is one pipe round trip per
pass (tens of microseconds), paid also by B=1 steps.

The child builds the real backend (`models.load_backend`: torch or ONNX Runtime) and owns its KV
cache; the parent keeps everything else (specs, sessions, sampling with each session's own
Generator), so a session's actions are the same as with the in-process backend. Requests are
`(op, args)` tuples over a `multiprocessing` pipe, answered in order. Big passes are pipelined
(`send` / `receive`): the batcher sends pass N+1 while the child computes pass N, so the child
need not wait for the parent to sample, answer and batch again. Calls that wait for their own
answer (`step`, `reencode`) are only made with no pass in flight (the batcher drains first).

Failure: a load error in the child is raised in the parent with the child's message; if the child
dies (killed, out of memory) every later call raises `ModelWorkerDied` naming its exit code, and
the parent's EOF on the pipe ends a child whose server died.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from polyskill.agent.policy import ActionParams, StepInputs

from ..errors import Unavailable
from .base import Backend

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 300.0
"""Longest wait for the child to import torch and load the model (a registry download is done by
the parent before; the child only reads local files)."""


class ModelWorkerDied(Unavailable):
    """The model's worker process is gone: steps of this version get UNAVAILABLE."""


class ProcessBackend(Backend):
    """Proxy to a backend in a spawned child process; the same interface as the one it wraps."""

    def __init__(self, kind: str, path: str | Path, num_slots: int, device: str = "cpu",
                 threads: int = 1) -> None:
        ctx = mp.get_context("spawn")  # NOTE: never fork a process that runs gRPC threads
        self._conn, child_conn = ctx.Pipe()
        self._process = ctx.Process(
            target=_worker_main, args=(child_conn, kind, str(path), num_slots, device, threads),
            name=f"polyskill-model-{Path(path).name}", daemon=True)
        self._process.start()
        child_conn.close()  # the child holds its end; EOF then means the child is gone
        self._lock = threading.Lock()  # one sender at a time; close() waits for it
        self._in_flight = 0  # passes sent and not yet received
        if not _poll_alive(self._conn, self._process, STARTUP_TIMEOUT_S):
            self.close()
            raise ModelWorkerDied(f"model worker for {path} did not start within "
                                  f"{STARTUP_TIMEOUT_S:g} s")
        try:
            info = self._receive()
        except BaseException:
            self.close()  # the child has exited (load error) or is stuck: reap it
            raise
        super().__init__(info["obs_spec"], info["action_spec"], info["context_length"])
        self.name = f"{info['name']}-process"
        self._num_slots, self._cache_bytes = info["num_slots"], info["cache_bytes"]
        self.pid = self._process.pid

    pipelined = True

    @property
    def num_slots(self) -> int:
        return self._num_slots

    @property
    def cache_bytes(self) -> int:
        return self._cache_bytes

    def step(self, inputs: StepInputs) -> ActionParams:
        return self._call("step", inputs)

    def send(self, inputs: StepInputs) -> None:
        with self._lock:
            self._send("step", inputs)
            self._in_flight += 1

    def receive(self) -> ActionParams:
        """Only the batcher's model thread calls this, in the order of `send`."""
        try:
            return self._receive()
        finally:
            self._in_flight -= 1

    def reencode(self, slot: int, steps: Sequence) -> None:
        """One request for the whole history, not one round trip per step."""
        if steps:
            self._call("reencode", slot, list(steps))

    def close(self) -> None:
        """Stop the child (it exits on EOF); idempotent. Waits for a call in flight."""
        with self._lock:
            if not self._conn.closed:
                self._conn.close()
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)

    # ---- pipe ---------------------------------------------------------------------------------
    def _call(self, op: str, *args: Any) -> Any:
        with self._lock:
            assert self._in_flight == 0, "a pipelined pass is in flight: its answer comes first"
            self._send(op, *args)
            return self._receive()

    def _send(self, op: str, *args: Any) -> None:
        try:
            self._conn.send((op, args))
        except (OSError, ValueError):  # broken pipe, or closed by close()
            raise self._died() from None

    def _receive(self) -> Any:
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):
            raise self._died() from None
        if status == "error":
            raise value
        return value

    def _died(self) -> ModelWorkerDied:
        self._process.join(1)
        return ModelWorkerDied(
            f"the model worker process (pid {self._process.pid}) exited with code "
            f"{self._process.exitcode}; restart the server (see its log for the cause)")


def _poll_alive(conn: Connection, process: mp.Process, timeout: float) -> bool:
    """Wait for the child's first message, returning early (True) if it died: then the EOF
    raises a clear ModelWorkerDied in `_receive`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(0.1) or not process.is_alive():
            return True
    return False


def _worker_main(conn: Connection, kind: str, path: str, num_slots: int, device: str,
                 threads: int) -> None:
    """The child: load the backend, then answer requests until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which drains first
    import torch

    from polyskill.malloc import keep_large_blocks

    from ..models import load_backend

    torch.set_num_threads(threads)
    keep_large_blocks()
    try:
        backend = load_backend(kind, path, num_slots, device)
    except Exception as e:  # noqa: BLE001 - reported in the parent, which raises it
        _reply(conn, "error", e)
        return
    _reply(conn, "ok", {"obs_spec": backend.obs_spec, "action_spec": backend.action_spec,
                        "context_length": backend.context_length, "name": backend.name,
                        "num_slots": backend.num_slots, "cache_bytes": backend.cache_bytes})
    ops = {"step": backend.step, "reencode": backend.reencode}
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed the pipe or died
        try:
            result = ops[op](*args)
        except Exception as e:  # noqa: BLE001 - raised in the parent, per call
            _reply(conn, "error", e)
        else:
            _reply(conn, "ok", result)


def _reply(conn: Connection, status: str, value: Any) -> None:
    try:
        conn.send((status, value))
    except (EOFError, OSError):
        return
    except Exception as e:  # noqa: BLE001 - an exception that does not pickle
        conn.send(("error", RuntimeError(f"{type(value).__name__}: {value} (from {e})")))
