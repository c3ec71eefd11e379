"""What each model of a server loads with and holds (serving/models/plans.py),
planned over a stand-in device list: no libllama, no RPC server. The files
are shape-only tables (synth_layouts.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from synth_layouts import write_layout

from shimmy_py.errors import ShimmyError
from shimmy_py.generation.options import ModelOptions
from shimmy_py.placement.plan import DeviceSpec
from shimmy_py.serving.config import ServeConfig
from shimmy_py.serving.models.catalog import Catalog
from shimmy_py.serving.models.plans import ModelPlans
from shimmy_py.serving.models.settings import ModelSettings
from shimmy_py.sizes import GiB


def plans(tmp_path: Path, asked: list, **kw) -> ModelPlans:
    paths = [write_layout(tmp_path / f"{n}.gguf", "qwen3moe") for n in ("alpha", "beta")]
    config = ServeConfig(None, known_paths=tuple(paths), ctx=256, parallel=2,
                         model=ModelOptions.build(n_threads=2, **kw.pop("model", {})), **kw)

    def devices(rpc, host_ram):
        asked.append((rpc, host_ram))
        return [DeviceSpec("CPU", "cpu", 16 * GiB, "CPU"), DeviceSpec("GPU0", "accelerator", GiB, "GPU0")]
    return ModelPlans(config, Catalog(None, config.known_paths), devices)


def test_need_is_the_plan_per_device_over_the_devices_found_once(tmp_path):
    asked = []
    p = plans(tmp_path, asked)
    need = p.need("alpha")
    assert set(need) == {"CPU", "GPU0"} and need["GPU0"] > 0      # the layers on the stand-in accelerator
    p.need("beta")
    assert asked == [((), ())]                                      # one handshake for both models
    assert p.options_for("alpha").n_ctx == 256 * 2 and p.options_for("alpha").n_seq_max == 2


def test_replan_fits_into_the_room_left_or_says_none(tmp_path):
    p = plans(tmp_path, [])
    room = {"GPU0": p.need("alpha")["GPU0"], "CPU": 8 * GiB}
    need, plan = p.replan("alpha", room)
    assert need["GPU0"] <= room["GPU0"] and plan.request.strategy == "fit"
    assert p.replan("alpha", {"GPU0": 0, "CPU": 1}) is None


def test_a_models_own_settings_and_a_wrong_one_at_start(tmp_path):
    own = ModelSettings(model=ModelOptions.build(n_threads=1, cpu_moe=True), ctx=64, keep_alive=5.0)
    p = plans(tmp_path, [], settings={"beta": own})
    assert p.options_for("beta").n_ctx == 64 * 2 and p.keep_alive("beta") == 5.0
    assert p.options_for("alpha").placement.strategy.name != "cpu-moe"
    p.check_settings()
    with pytest.raises(ShimmyError, match="--config names model 'gamma'"):
        plans(tmp_path, [], settings={"gamma": own}).check_settings()
