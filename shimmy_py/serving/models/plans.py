"""What each model of a server loads with and what that holds (ModelPlans):
its --config settings over the server's, its worker's spec, the bytes per
device its plan holds (what admission weighs), its plan fitted into the room
left, its keep-alive. The devices come through one seam, `device_specs`
(placement.devices by default, a stand-in list in tests), asked once per set
of RPC servers: a ggml-rpc-server serves one client at a time, so once a
model's worker holds it a handshake from the server would wait."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from ...errors import PlacementError, ShimmyError
from ...generation.options import ModelOptions
from ...placement.machine import make_plan
from ...placement.options import Strategy
from ..config import ServeConfig
from ..worker.supervisor import WorkerSpec
from .catalog import Catalog
from .settings import ModelSettings


def _device_specs(rpc: tuple, host_ram: tuple) -> list:
    from ...placement.devices import device_specs
    return device_specs(rpc, host_ram=host_ram)


class ModelPlans:
    def __init__(self, config: ServeConfig, catalog: Catalog, device_specs: Callable = _device_specs):
        self.config, self.catalog, self._device_specs = config, catalog, device_specs
        self._devices: dict[tuple, list] = {}
        self.asked_ctx: dict[str, int] = {}     # a context per request that a request asked the next load for
        placed = config.model.placement
        if placed.rpc or placed.host_ram:   # asked now, before any worker holds a ggml-rpc-server
            self.devices_for(placed.rpc, placed.host_ram)

    def devices_for(self, rpc: tuple, host_ram: tuple) -> list:
        """The devices a model on these RPC servers is planned on, found once."""
        if (rpc, host_ram) not in self._devices:
            self._devices[(rpc, host_ram)] = self._device_specs(rpc, host_ram)
        return self._devices[(rpc, host_ram)]

    def check_settings(self) -> None:
        """Each --config model is one this server serves, and plans as its
        worker will plan it (a -ot pattern llama.cpp refuses, --n-cpu-moe
        beyond its layers, a device capacity naming no device): a wrong
        setting is an error at start-up, not a 500 at the first request."""
        for name in self.config.settings:
            if name not in self.catalog:
                raise ShimmyError(f"--config names model {name!r}, which this server does not serve (known: "
                                  f"{', '.join(sorted(self.catalog))})")
            if self.config.settings[name].model is None:
                continue
            try:
                self.need(name)
            except ShimmyError as e:
                raise ShimmyError(f"--config: model {name!r}: {e}") from None

    def settings_for(self, name: str) -> ModelSettings:
        """--config's settings for the model `name` names (under any of its names)."""
        path = self.catalog[name]
        for n, p in self.catalog.items():
            if p == path and n in self.config.settings:
                return self.config.settings[n]
        return ModelSettings()

    def options_for(self, name: str) -> ModelOptions:
        """What the model `name` loads with: its --config table's options or the
        server's (with the --model's plan for the --model), sized for the
        server's context and parallel sequences (or its own)."""
        c, own = self.config, self.settings_for(name)
        options = own.model if own.model is not None else c.model
        if own.model is None and c.main_plan is not None and c.model_path is not None \
                and Path(self.catalog[name]) == Path(c.model_path):
            options = options.with_plan(c.main_plan)
        return c.sized(options, self.asked_ctx.get(name) or own.ctx, own.parallel)

    def context_for(self, name: str, asked: int | None) -> int | None:
        """The context per request a load of `name` takes for a request that
        asks `asked` tokens (Ollama's num_ctx): more than the server's or its
        --config's, capped at what the model was trained for; None where the
        usual context holds it."""
        usual = self.settings_for(name).ctx or self.config.ctx
        d = self.catalog.describe(Path(self.catalog[name]))
        trained = d.n_ctx_train if d is not None and d.n_ctx_train else None
        wanted = min(asked, trained) if asked and trained else asked
        return wanted if wanted and wanted > usual else None

    def spec(self, name: str) -> WorkerSpec:
        """What the model's worker process is started with."""
        c = self.config
        watchdog = c.watchdog if c.watchdog != float("inf") else 0.0
        return WorkerSpec(str(self.catalog[name]), self.options_for(name), c.queue, c.cache_ram, watchdog)

    def keep_alive(self, name: str) -> float:
        own = self.settings_for(name).keep_alive
        return own if own is not None else self.config.keep_alive

    def plan(self, name: str):
        """The model's plan as it loads here (options_for), made without loading it."""
        placement = self.options_for(name).placement
        return make_plan(self.catalog[name], placement, self.devices_for(placement.rpc, placement.host_ram))

    def need(self, name: str) -> dict:
        """Bytes per device the model's plan holds: what admission weighs."""
        return self.plan(name).held_bytes()

    def replan(self, name: str, room: dict):
        """The model planned with fit into `room` (bytes per device; the budget's
        margin is already taken), as (need, Plan), or None where even that does
        not fit. The model's own -ot overrides stay."""
        placement = self.options_for(name).placement
        devices = self.devices_for(placement.rpc, placement.host_ram)
        known = {d.name for d in devices}
        placement = replace(placement, strategy=Strategy("fit"), fit_margin=False,
                            device_capacity=tuple((d, b) for d, b in room.items() if d in known))
        try:
            plan = make_plan(self.catalog[name], placement, devices)
        except PlacementError:
            return None
        return plan.held_bytes(), plan
