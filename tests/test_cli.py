"""The command line, run as a user would: a real subprocess."""
import json
import subprocess
import sys

from support.batch_noise import EXACT_CLI_ARGS


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "shimmy_py", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_generate_json(tiny_path, model):
    p = cli("generate", tiny_path, "-p", "Hello", "-n", "6", "--temperature", "0", "--json", "--ctx", "512",
            *EXACT_CLI_ARGS)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert {"text", "tokens", "finish_reason", "prompt_tokens", "completion_tokens",
            "ttft_s", "tokens_per_s"} <= set(out)
    assert out["completion_tokens"] == 6 and out["finish_reason"] == "length"
    assert out["text"] == model.generate("Hello", max_tokens=6, temperature=0).text


def test_generate_streams_text(tiny_path, model):
    p = cli("generate", tiny_path, "-p", "Hello", "-n", "6", "--temperature", "0", *EXACT_CLI_ARGS)
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


def test_synth_quant_types_every_preset(tmp_path):
    """One flag for the weight type: DeepSeekMoE 16B's shapes at Q8_0 are Q8_0
    (they were written F16 without a word); a llama-quantize mix is made by the
    built quantizer and loads; a real-size preset takes it as before; --dtype
    is the same flag."""
    from collections import Counter

    from shimmy_py.gguf_io.reader import read_header

    def matrix_types(path):     # the routers stay F32, as llama.cpp's converters keep them
        return Counter(t.ggml_type.name for t in read_header(path).tensors
                       if len(t.shape) > 1 and "ffn_gate_inp" not in t.name)
    p = cli("synth", tmp_path / "ds16b-q8.gguf", "--preset", "deepseek-moe-16b", "--quant", "Q8_0", "--shape-only")
    assert p.returncode == 0, p.stderr
    assert set(matrix_types(tmp_path / "ds16b-q8.gguf")) == {"Q8_0"}
    p = cli("synth", tmp_path / "k.gguf", "--preset", "tiny-k", "--quant", "q4_k_m")
    assert p.returncode == 0, p.stderr
    assert {"Q4_K", "Q6_K"} <= set(matrix_types(tmp_path / "k.gguf")) and "F16" not in matrix_types(tmp_path / "k.gguf")
    g = cli("generate", tmp_path / "k.gguf", "-p", "Hello", "-n", "3", "--temperature", "0", "--json")
    assert g.returncode == 0 and json.loads(g.stdout)["completion_tokens"] == 3, g.stderr
    p = cli("synth", tmp_path / "q3.gguf", "--preset", "qwen3-30b-a3b", "--shape-only", "--dtype", "Q8_0")
    assert p.returncode == 0, p.stderr
    assert matrix_types(tmp_path / "q3.gguf").most_common(1)[0][0] == "Q8_0"


def test_synth_flags_that_do_not_apply_are_errors_naming_them(tmp_path):
    for args, named in [(["--behaviour", "tool-caller", "--quant", "Q8_0"], "--quant"),
                        (["--arch", "qwen3moe", "--preset", "bench"], "--preset"),
                        (["--preset", "tiny", "--shape-only", "--seed", "2"], "--seed"),
                        (["--preset", "qwen3-30b-a3b", "--shape-only", "--vocab", "v.gguf"], "--vocab")]:
        p = cli("synth", tmp_path / "x.gguf", *args)
        assert p.returncode == 1 and named in p.stderr and "does not apply" in p.stderr, (args, p.stderr)
        assert not (tmp_path / "x.gguf").exists()


def test_synth_with_a_given_vocab(tmp_path, tiny_path):
    """--vocab copies another tokenizer GGUF (here: the tiny model's own, which
    holds DeepSeek's); a missing one is a clear error naming it."""
    from shimmy_py.gguf_io.reader import read_header
    out = tmp_path / "v.gguf"
    p = cli("synth", out, "--preset", "tiny", "--seed", "1", "--vocab", tiny_path)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == tiny_path.read_bytes()   # same seed, same tokenizer: the same file
    assert read_header(out).metadata["tokenizer.ggml.model"] == "gpt2"
    p = cli("synth", tmp_path / "w.gguf", "--vocab", tmp_path / "missing.gguf")
    assert p.returncode == 1 and "missing.gguf" in p.stderr and "Traceback" not in p.stderr


def test_synth_refuses_a_vocab_of_another_size(tmp_path):
    import gguf
    small = tmp_path / "small-vocab.gguf"
    w = gguf.GGUFWriter(str(small), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "c"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    p = cli("synth", tmp_path / "w.gguf", "--vocab", small)
    assert p.returncode == 1 and "has 3 tokens" in p.stderr and "102400" in p.stderr
    assert "Traceback" not in p.stderr


def test_serve_sigterm_ends_open_streams_and_exits(tiny_path):
    import re
    import signal
    import urllib.request
    proc = subprocess.Popen([sys.executable, "-m", "shimmy_py", "serve", "--model", str(tiny_path),
                             "--port", "0", "--ctx", "512", "--parallel", "2", "--threads", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stdout:
            if m := re.search(r"ready on (http://\S+)", line):
                url = m.group(1)
                break
        assert url, proc.stderr.read()
        body = json.dumps({"prompt": "Go", "max_tokens": 500, "temperature": 0, "stream": True}).encode()
        req = urllib.request.Request(url + "/v1/completions", data=body)
        stream = urllib.request.urlopen(req, timeout=60)
        assert stream.readline().startswith(b"data: ")
        proc.send_signal(signal.SIGTERM)
        rest = stream.read().decode()                 # the stream ends, cleanly
        assert rest.rstrip().endswith("data: [DONE]")
        events = [ln[6:] for ln in rest.splitlines() if ln.startswith("data: {")]
        # cut short by the shutdown, and saying so (not "length", which a client would take as max_tokens)
        assert json.loads(events[-1])["choices"][0]["finish_reason"] == "cancelled"
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_sigterm_with_idle_keep_alive_connections_is_quiet(tiny_path):
    """An idle keep-alive connection (what a client's pool holds) at shutdown:
    closed, with no traceback or "Task was destroyed" in the log (there were)."""
    import http.client
    import re
    import signal
    proc = subprocess.Popen([sys.executable, "-m", "shimmy_py", "serve", "--model", str(tiny_path),
                             "--port", "0", "--ctx", "512", "--threads", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = next((m.group(1) for line in proc.stdout if (m := re.search(r"ready on (http://\S+)", line))), None)
        assert url, proc.stderr.read()
        host, port = url[len("http://"):].rsplit(":", 1)
        idle = http.client.HTTPConnection(host, int(port), timeout=30)
        idle.request("GET", "/health")
        assert idle.getresponse().read()          # answered; the connection stays open
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        log = proc.stderr.read()
        assert "Traceback" not in log and "destroyed" not in log and "Exception" not in log, log[-3000:]
        idle.close()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_busy_port_and_list(tiny_path, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = cli("serve", "--model", tiny_path, "--port", s.getsockname()[1], timeout=120)
    assert p.returncode == 1 and "in use" in p.stderr
    (tmp_path / "My-Model-Q8_0.gguf").write_bytes(tiny_path.read_bytes())
    p = cli("list", "--model-dirs", tmp_path, "--json")
    assert p.returncode == 0, p.stderr
    [row] = [r for r in json.loads(p.stdout) if r["source"] == "model-dirs"]
    assert (row["name"], row["short_name"], row["architecture"]) == ("my-model-q8_0", "my-model", "deepseek")
    assert row["params"] > row["active_params"] > 0 and row["quantization"] == "F32"


def test_every_misuse_is_one_line_and_a_non_zero_exit(tiny_path, tmp_path):
    """Each of these printed a traceback or crashed before."""
    cases = [
        ("bench", tiny_path, "--placements", "foo"),
        ("bench", tiny_path, "--placements", "n-cpu-moe=abc"),
        ("bench", tiny_path, "-p", "0"),
        ("bench", tiny_path, "-r", "0"),
        ("serve", "--model", tiny_path, "--port", "70000"),
        ("serve", "--model", tiny_path, "--port", "-1"),
        ("serve", "--model", tiny_path, "--parallel", "0"),
        ("serve", "--model", tiny_path, "--queue", "-1"),
        ("generate", tiny_path, "-p", "Hi", "--threads", "100000"),
        ("synth", "/proc/x.gguf"),
        ("plan", tiny_path, "-ot", "a{99999999999}=CPU"),
        ("plan", tiny_path, "-ot", r"(?<=blk\.1\.)ffn_up_exps=CPU"),
    ]
    for args in cases:
        p = cli(*args, timeout=120)
        assert p.returncode in (1, 2), (args, p.returncode, p.stderr)
        assert "Traceback" not in p.stderr, (args, p.stderr)
        errors = [ln for ln in p.stderr.splitlines() if "error" in ln]
        assert len(errors) == 1, (args, p.stderr)


def test_synth_a_behaviour_and_generate_under_a_json_schema(tmp_path):
    """synth --behaviour tool-caller writes the hand-set model; generate
    --json-schema holds its output to the schema (and a schema the grammar
    cannot enforce is one line naming the keyword)."""
    out = tmp_path / "tool-caller.gguf"
    p = cli("synth", out, "--behaviour", "tool-caller")
    assert p.returncode == 0 and "weights set by hand" in p.stdout, p.stderr
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 9}},
              "required": ["n"]}
    p = cli("generate", out, "-p", "JSON:", "-n", "64", "--json-schema", json.dumps(schema), "--json")
    assert p.returncode == 0, p.stderr
    assert 3 <= json.loads(json.loads(p.stdout)["text"])["n"] <= 9
    p = cli("generate", out, "-p", "JSON:", "--json-schema", '{"type": "integer", "multipleOf": 2}')
    assert p.returncode != 0 and "multipleOf" in p.stderr and "Traceback" not in p.stderr
