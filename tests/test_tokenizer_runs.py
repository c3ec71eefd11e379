"""Any text tokenizes, for every tokenizer the project ships: llama.cpp's
std::regex pre-tokenizer (DeepSeek LLM's) recursed once per character of a
run of spaces, tabs, letters, digits, punctuation or CJK and overflowed an
8 MiB stack at about 26,000 characters (benchmarks/tokenizer_runs.py
measures it); the server's worker died on a 30 KB run of spaces. Runs of
100,000 characters of each class tokenize through Model.tokenize (in a
child process, so that a crash is a failure here, not the end of the test
run), and over HTTP without a single worker restart."""
import json
import subprocess
import sys

import pytest
from support.http import post_json, request
from support.servers import config

from shimmy_py.serving.server import Server
from shimmy_py.synthetic import families

CLASSES = {"spaces": " ", "tabs": "\t", "newlines": "\n", "letters": "a", "digits": "7", "punctuation": "!",
           "CJK": "中", "emoji": "😀", "combining": "e\u0301", "alternating": "a "}
# the four tokenizers of the pinned source's vocabulary files, through a family that carries each
TOKENIZERS = {"deepseek-llm": "deepseek", "qwen2": "qwen3moe", "llama-spm": "mixtral", "llama-bpe": "gpt-oss"}
N = 100_000

CHILD = """
import sys
from shimmy_py import Model
m = Model(sys.argv[1], vocab_only=True)
for unit in sys.argv[2:]:
    text = unit * ({n} // len(unit))
    tokens = m.tokenize(text)
    assert len(tokens) > 1, unit
    ten_k = (unit * (10_000 // len(unit))).encode()       # on the big stack, and on the caller's (8 MiB holds 10k)
    assert m.tokenize(ten_k.decode()) == m.handle.tokenize_here(ten_k, True, False), unit
print("ok", len(sys.argv) - 2)
""".replace("{n}", str(N))


@pytest.fixture(scope="module")
def family_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    return {tok: families.write(d / f"{fam}.gguf", fam, seed=1) for tok, fam in TOKENIZERS.items()}


@pytest.mark.parametrize("tokenizer", sorted(TOKENIZERS))
def test_100k_runs_of_every_class_tokenize(family_files, tokenizer):
    proc = subprocess.run([sys.executable, "-c", CHILD, str(family_files[tokenizer]), *CLASSES.values()],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == f"ok {len(CLASSES)}"


@pytest.mark.parametrize("tokenizer", sorted(TOKENIZERS))
def test_the_server_takes_any_run_without_a_restart(family_files, tokenizer):
    with Server(config(family_files[tokenizer], ctx=256, parallel=1)).start() as srv:
        for name, unit in CLASSES.items():
            text = unit * (N // len(unit))
            for path, body in (("/v1/completions", {"prompt": text, "max_tokens": 2}),
                               ("/v1/chat/completions", {"messages": [{"role": "user", "content": text}],
                                                         "max_tokens": 2})):
                raw = json.dumps(body, ensure_ascii=False).encode()     # UTF-8, as clients send it
                status, _, answer = request(srv.url, path, raw=raw)
                assert status == 400 and "context holds" in answer, (name, path, status, answer[:300])
        status, health = post_json(srv.url, "/health", None)
        assert status == 200 and health["restarts"] == 0
