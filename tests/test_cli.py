"""The command line, run as a user would: a real subprocess."""
import json
import subprocess
import sys


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "shimmy_py", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_generate_json(tiny_path, model):
    p = cli("generate", tiny_path, "-p", "Hello", "-n", "6", "--temperature", "0", "--json", "--ctx", "512")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert {"text", "tokens", "finish_reason", "prompt_tokens", "completion_tokens",
            "ttft_s", "tokens_per_s"} <= set(out)
    assert out["completion_tokens"] == 6 and out["finish_reason"] == "length"
    assert out["text"] == model.generate("Hello", max_tokens=6, temperature=0).text


def test_generate_streams_text(tiny_path, model):
    p = cli("generate", tiny_path, "-p", "Hello", "-n", "6", "--temperature", "0")
    assert p.returncode == 0, p.stderr
    assert p.stdout.rstrip("\n") == model.generate("Hello", max_tokens=6, temperature=0).text.rstrip("\n")
    assert "finish: length" in p.stderr


def test_generate_bad_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_text("nope")
    p = cli("generate", bad, "-p", "Hello")
    assert p.returncode == 1
    assert "not a GGUF file" in p.stderr and "Traceback" not in p.stderr


def test_synth_shape_only_16b(tmp_path):
    out = tmp_path / "ds16b.gguf"
    p = cli("synth", out, "--preset", "deepseek-moe-16b", "--shape-only")
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size > 32e9          # the apparent size of the F16 weights
    assert out.stat().st_blocks * 512 < 50e6  # but nothing is stored: a sparse file
