"""Serve a model and talk to it with the official OpenAI client, as any app
pointed at a local server does: a chat, a streamed chat, a completion.

    python examples/serve_openai_client.py [MODEL.gguf]

Starts `shimmy-py serve` on a free port (stopped at the end); without a
model it writes the tiny synthetic DeepSeekMoE (random weights: gibberish).
Needs `pip install openai` (in the test extras).
"""
from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

try:
    from openai import OpenAI
except ImportError:
    sys.exit("this example needs the openai client: pip install openai")

import shimmy_py

model = Path(sys.argv[1]) if len(sys.argv) > 1 else \
    shimmy_py.synth.write(Path(tempfile.mkdtemp()) / "tiny.gguf", "tiny")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "shimmy_py", "serve", "--model", str(model),
                           "--port", str(port), "--ctx", "1024"])
try:
    for _ in range(600):                      # the model loads on start
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        sys.exit("the server did not become ready")
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
    name = client.models.list().data[0].id
    reply = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi!"}],
                                           max_tokens=16, temperature=0)
    print(f"{name}: {reply.choices[0].message.content!r} ({reply.usage.completion_tokens} tokens)")
    print("streamed: ", end="")
    for chunk in client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Go on"}],
                                                max_tokens=16, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()
    done = client.completions.create(model=name, prompt="Mixture of experts", max_tokens=8, temperature=0)
    print(f"completion: {done.choices[0].text!r}, finish {done.choices[0].finish_reason}")
finally:
    server.terminate()
    server.wait(timeout=30)
