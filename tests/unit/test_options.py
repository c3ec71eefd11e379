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
