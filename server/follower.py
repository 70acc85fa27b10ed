"""Follow a model source on the server's event loop: poll, load beside, swap aliases, unload.

Every `poll_s` the source is polled in a worker thread (MLflow calls and weight loading never
block the event loop); a new version is added to the store beside the old ones and the aliases
move (new sessions get it at once). Versions that no alias points to and no session uses are
unloaded (checked twice a second). A registry that cannot be reached is logged and retried at the
next period while the loaded versions keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .models import ModelSource, ModelStore

log = logging.getLogger("polyskill.server.follower")
GC_PERIOD_S = 0.5


class ModelFollower:
    def __init__(self, store: ModelStore, source: ModelSource, in_use: Callable[[], set[int]],
                 num_slots: int, device: str, poll_s: float,
                 on_change: Callable[[], None] | None = None) -> None:
        self.store, self.source, self.in_use = store, source, in_use
        self.num_slots, self.device, self.poll_s = num_slots, device, poll_s
        self.on_change = on_change
        self.failures = 0
        self.last_error = ""
        self.swaps: list[tuple[float, str, int]] = []  # (time, alias, version) for tests/metrics

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + (self.poll_s if len(self.store) else 0.0)  # filled at start?
        while True:
            if loop.time() >= next_poll:
                next_poll = loop.time() + self.poll_s
                await self.poll_once()
            self.collect()
            await asyncio.sleep(min(self.poll_s, GC_PERIOD_S))

    async def poll_once(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            new, aliases = await loop.run_in_executor(
                None, self.source.poll, self.num_slots, self.device, set(self.store.versions))
        except Exception as e:  # noqa: BLE001 - keep serving what is loaded
            self.failures += 1
            self.last_error = f"{type(e).__name__}: {e}"
            if self.failures == 1 or self.failures % 10 == 0:
                log.warning("model source poll failed; serving loaded versions, retrying",
                            extra={"error": self.last_error[:300], "failures": self.failures,
                                   "versions": self.store.versions})
            return
        if self.failures:
            log.info("model source reachable again", extra={"failures": self.failures})
            self.failures = 0
        moved = self.store.update(new, aliases)
        for alias in moved:
            version = self.store.alias_version(alias)
            self.swaps.append((time.time(), alias, version))
            log.info("alias moved", extra={"alias": alias, "model_version": version,
                                           "versions": self.store.versions})
        if (new or moved) and self.on_change:
            self.on_change()

    def collect(self) -> None:
        """Unload versions without alias or session (their in-flight steps hold a reference)."""
        unused = self.store.unused(self.in_use())
        for version in unused:
            self.store.remove(version)
            log.info("model version unloaded", extra={"model_version": version,
                                                      "versions": self.store.versions})
        if unused and self.on_change:
            self.on_change()
