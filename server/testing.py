"""Run a real server on loopback in a background thread (its own event loop): for tests and
benchmarks, with stock grpc clients in the calling thread.

    with ServerThread(ServerConfig(checkpoint=ckpt, port=0)) as srv:
        channel = grpc.insecure_channel(srv.address)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .config import ServerConfig
from .models import ModelStore

if TYPE_CHECKING:  # NOTE: the app (grpc health, reflection) loads in start(), so make_checkpoint
    from .app import PolicyServer  # imports where only torch is (a GPU machine's bench gpu)


class ServerThread:
    def __init__(self, config: ServerConfig, models: ModelStore | None = None) -> None:
        self.config = replace(config, host="127.0.0.1") if not config.host else config
        self._models = models
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="polyskill-server",
                                        daemon=True)
        self.server: PolicyServer | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ServerThread:
        self._thread.start()

        from .app import create_server

        async def build() -> None:
            self.server, self.port = create_server(self.config, self._models)
            await self.server.start()

        self.call(build())
        return self

    def stop(self, grace: float = 1.0) -> None:
        if self.server is not None:
            self.call(self.server.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_checkpoint(directory: str, obs_space: Any, action_space: Any, seed: int = 0,
                    **network: Any) -> str:
    """Save a randomly initialised network for `obs_space`/`action_space` (gymnasium spaces)."""
    import torch

    from polyskill.agent.checkpoint import save_network
    from polyskill.agent.config import NetworkConfig
    from polyskill.agent.network import AgentNetwork
    from polyskill.agent.spaces import action_spec_from_space, obs_spec_from_space

    torch.manual_seed(seed)
    cfg = NetworkConfig(**{"dropout": 0.0, **network})
    net = AgentNetwork(cfg, obs_spec_from_space(obs_space), action_spec_from_space(action_space))
    save_network(net, directory)
    return directory
