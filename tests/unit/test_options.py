"""What users type for placement: sizes, -ot overrides, strategies, bench specs."""
import pytest

from shimmy_py import PlacementError, PlacementOptions
from shimmy_py.placement.options import parse_override_arg, parse_placement_spec, parse_size


@pytest.mark.parametrize("text, value", [("8GiB", 8 * 2**30), ("24GB", 24 * 10**9), ("512 MiB", 512 * 2**20),
                                         ("1.5GiB", int(1.5 * 2**30)), ("123", 123), (4096, 4096)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["eight", "8 parsecs", "-1GiB", "", True])
def test_bad_sizes(text):
    with pytest.raises(PlacementError, match="cannot read size"):
        parse_size(text)


def test_override_syntax_is_llama_cpps():
    assert parse_override_arg(r"blk\.1\.ffn_.*=CPU,exps=RPC0[127.0.0.1:5]") == \
        [(r"blk\.1\.ffn_.*", "CPU"), ("exps", "RPC0[127.0.0.1:5]")]
    with pytest.raises(PlacementError, match="expected PATTERN=BUFFER_TYPE"):
        parse_override_arg("exps")


def test_one_strategy_at_a_time():
    assert PlacementOptions().request().strategy == "gpu"
    assert PlacementOptions(n_cpu_moe=0).request().strategy == "n-cpu-moe"
    r = PlacementOptions(fit=True, vram_budget="2GiB", overrides=("a=CPU",), n_ctx=99).request()
    assert (r.strategy, r.vram_budget, r.overrides, r.n_ctx) == ("fit", 2 * 2**30, (("a", "CPU"),), 99)
    with pytest.raises(PlacementError, match="choose one strategy"):
        PlacementOptions(cpu_moe=True, fit=True).request()
    with pytest.raises(PlacementError, match="budget for --fit"):
        PlacementOptions(vram_budget="1GiB").request()


@pytest.mark.parametrize("spec, strategy", [("gpu", "gpu"), ("cpu-moe", "cpu-moe"), ("n-cpu-moe=3", "n-cpu-moe"),
                                            ("fit", "fit"), ("fit=8GiB", "fit")])
def test_bench_specs(spec, strategy):
    assert parse_placement_spec(spec).request().strategy == strategy


@pytest.mark.parametrize("spec", ["foo", "n-cpu-moe=abc", "n-cpu-moe", "gpu=1", "fit=lots"])
def test_bad_bench_specs_are_placement_errors(spec):
    with pytest.raises(PlacementError):
        parse_placement_spec(spec)


# --- one record per concept: the flags and the config keys come from the fields ------------------
def _parse(cls, argv, **add):
    import argparse

    from shimmy_py.fields import add_flags, from_flags
    p = argparse.ArgumentParser(exit_on_error=False)
    add_flags(p, cls, **add)
    return from_flags(cls, p.parse_args(argv))


def test_strategy_specs_round_trip():
    from shimmy_py.placement.options import Strategy
    for spec in ("gpu", "cpu-moe", "n-cpu-moe=8", "fit", "fit=1073741824"):
        assert str(Strategy.parse(spec)) == spec
    assert Strategy.parse("fit=1GiB").vram_budget == 2**30


def test_model_options_from_flags_carry_the_placement_whole():
    from shimmy_py.generation.options import ModelOptions
    o = _parse(ModelOptions, ["--ctx", "512", "--n-cpu-moe", "3", "-ot", "a=CPU,b=CPU", "-ot", "c=CPU",
                              "--rpc", "h:1,h:2", "--device-capacity", "RPC0=1GiB", "-fa", "off", "--threads", "2"])
    p = o.placement
    assert (str(p.strategy), p.overrides, p.rpc) == ("n-cpu-moe=3", (("a", "CPU"), ("b", "CPU"), ("c", "CPU")),
                                                     ("h:1", "h:2"))
    assert p.device_capacity == (("RPC0", 2**30),) and o.n_threads == 2
    assert (p.n_ctx, p.flash_attn) == (512, False)            # the plan is for the model's context
    assert _parse(ModelOptions, ["--strategy", "fit=2GiB"]).placement.strategy.vram_budget == 2 * 2**30
    assert _parse(ModelOptions, ["--fit", "--vram-budget", "2GiB"]).placement.strategy.vram_budget == 2 * 2**30
    assert _parse(ModelOptions, []) == ModelOptions()


@pytest.mark.parametrize("argv, message", [(["--cpu-moe", "--fit"], "choose one strategy, not --cpu-moe and --fit"),
                                           (["--strategy", "gpu", "--cpu-moe"], None),
                                           (["--vram-budget", "1GiB"], "budget for --fit"),
                                           (["--n-cpu-moe", "-1"], "layer count")])
def test_contradicting_strategy_flags_are_one_clear_error(argv, message):
    from shimmy_py.generation.options import ModelOptions
    if message is None:                       # the default strategy named explicitly: the shortcut decides
        assert str(_parse(ModelOptions, argv).placement.strategy) == "cpu-moe"
        return
    with pytest.raises(PlacementError, match=message):
        _parse(ModelOptions, argv)


def test_model_keywords_build_the_same_record():
    from shimmy_py.generation.options import ModelOptions
    o = ModelOptions.build(n_ctx=256, cpu_moe=True, rpc=["h:1"], device_capacity={"RPC0": "1GiB"}, kv_type="f32")
    assert str(o.placement.strategy) == "cpu-moe" and o.placement.device_capacity == (("RPC0", 2**30),)
    assert o.kv_type == "f32" and o.placement.n_ctx == 256
    with pytest.raises(TypeError, match="unexpected keyword argument 'cpu_mo'"):
        ModelOptions.build(cpu_mo=True)


def test_config_keys_are_the_flags_fields_and_a_table_replaces_the_strategy():
    from shimmy_py.errors import ShimmyError
    from shimmy_py.fields import from_mapping
    from shimmy_py.generation.options import ModelOptions
    base = ModelOptions.build(cpu_moe=True, rpc=["h:1"], kv_type="f32")
    o = from_mapping(ModelOptions, {"n_cpu_moe": 20, "overrides": ["a=CPU"], "flash_attn": "off"}, "m", base)
    assert str(o.placement.strategy) == "n-cpu-moe=20" and o.placement.overrides == (("a", "CPU"),)
    assert o.placement.rpc == ("h:1",) and o.kv_type == "f32" and o.flash_attn == "off"   # the rest is the server's
    assert str(from_mapping(ModelOptions, {"strategy": "fit=8GiB"}, "m", base).placement.strategy) == "fit=8589934592"
    for table, message in [({"n_cpu_moe": "lots"}, "m: n_cpu_moe = 'lots'"), ({"cpu-moe": True}, "unknown setting"),
                           ({"kv_type": "f7"}, "kv_type = 'f7'"), ({"vram_budget": "1e400GiB"}, "vram_budget"),
                           ({"device_capacity": {"RPC0": "lots"}}, "device_capacity"),
                           ({"cpu_moe": True, "fit": True}, "choose one strategy"), ({"overrides": [5]}, "overrides")]:
        with pytest.raises(ShimmyError, match=message):
            from_mapping(ModelOptions, table, "m", base)


def test_sampling_flags_come_from_the_record():
    from shimmy_py.generation.sampling import SamplingParams
    s = _parse(SamplingParams, ["--temp", "0", "--top-k", "5", "--seed", "7", "--repeat-last-n", "32"])
    assert (s.temperature, s.top_k, s.seed, s.repeat_last_n) == (0.0, 5, 7, 32)
    assert _parse(SamplingParams, []) == SamplingParams()
    assert SamplingParams.build(temperature=0, logit_bias={"12": -1}).logit_bias == ((12, -1.0),)
    with pytest.raises(TypeError, match="unexpected sampling parameter 'temprature'"):
        SamplingParams.build(temprature=0)
