"""Chat prompts as llama-server makes them: each family's real template
(Jinja, as the GGUF carries it) gives the text llama.cpp's own llama-server
(its default --jinja path) returns from /apply-template, for the same
messages: multi-turn, with a system message (merged into the user turn where
the template has no system role, as llama.cpp does), and a developer message."""
import json
import sys
import urllib.request
from pathlib import Path

import pytest

from shimmy_py import Model
from shimmy_py.gguf_io import families
from shimmy_py.native import install
from shimmy_py.procs import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from http_client import ServerProcess  # noqa: E402

CHATS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Tell me more"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Hi"}],
]


def llama_server_prompts(path, chats) -> list[str]:
    port = free_port()
    argv = [str(install.tool("llama-server")), "-m", str(path), "-c", "256", "-t", "2", "--host", "127.0.0.1",
            "--port", str(port), "--no-webui"]
    out = []
    with ServerProcess(argv, port, timeout=120) as srv:
        for messages in chats:
            req = urllib.request.Request(srv.url + "/apply-template", json.dumps({"messages": messages}).encode(),
                                         {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                out.append(json.loads(r.read())["prompt"])
    return out


@pytest.mark.parametrize("family", sorted(families.FAMILIES))
def test_chat_prompts_equal_llama_servers(tmp_path, family):
    path = families.write(tmp_path / f"{family}.gguf", family, seed=1)
    theirs = llama_server_prompts(path, CHATS)
    with Model(path, n_ctx=256, n_threads=2, vocab_only=True) as m:
        ours = [m.apply_chat_template(messages) for messages in CHATS]
    assert ours == theirs
