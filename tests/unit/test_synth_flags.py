"""Which of `synth`'s flags apply to what is asked (cli_synth.inapplicable):
every flag given either shapes the file or is an error naming it."""
from __future__ import annotations

import pytest

from shimmy_py.cli import build_parser
from shimmy_py.cli_synth import inapplicable


def why(*argv: str) -> str | None:
    return inapplicable(build_parser().parse_args(["synth", "out.gguf", *argv]))


@pytest.mark.parametrize("argv", [
    (), ("--preset", "bench", "--quant", "f16", "--seed", "3"), ("--preset", "deepseek-moe-16b", "--dtype", "q8_0"),
    ("--preset", "deepseek-moe-16b", "--quant", "Q4_K_M", "--shape-only"), ("--preset", "tiny", "--vocab", "v.gguf"),
    ("--arch", "mixtral", "--quant", "BF16", "--seed", "1"), ("--arch", "gpt-oss", "--shape-only"),
    ("--preset", "gpt-oss-20b", "--shape-only"), ("--preset", "mixtral-8x7b", "--shape-only", "--quant", "Q6_K"),
    ("--behaviour", "tool-caller", "--seed", "4"),
    ("--behaviour", "looper", "--arch", "qwen3moe", "--preset", "bench", "--quant", "Q8_0", "--seed", "2"),
])
def test_what_applies_is_taken(argv):
    assert why(*argv) is None


@pytest.mark.parametrize("argv, named", [
    (("--behaviour", "tool-caller", "--quant", "q8_0"), "--quant"),
    (("--behaviour", "tool-caller", "--preset", "bench"), "--preset"),
    (("--behaviour", "tool-caller", "--shape-only"), "--shape-only"),
    (("--behaviour", "looper", "--vocab", "v.gguf"), "--vocab"),
    (("--behaviour", "looper", "--quant", "Q4_K_M"), "--quant Q4_K_M"),
    (("--arch", "qwen3moe", "--preset", "tiny"), "--preset"),
    (("--preset", "qwen3-235b-a22b", "--shape-only", "--seed", "1"), "--seed"),
    (("--preset", "qwen3-235b-a22b", "--shape-only", "--quant", "F16"), "--quant F16"),
    (("--preset", "qwen3-235b-a22b",), "only --shape-only"),
    (("--preset", "bench", "--shape-only", "--seed", "1"), "--seed"),
])
def test_what_does_not_apply_is_named(argv, named):
    assert named in (why(*argv) or "")


def test_one_flag_two_spellings_and_unknown_types_refused(capsys):
    assert build_parser().parse_args(["synth", "o", "--dtype", "q8_0"]).quant == "Q8_0"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "o", "--quant", "Q9_K"])
    assert "unknown weight type 'Q9_K'" in capsys.readouterr().err
