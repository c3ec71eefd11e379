"""Every default of the package, stated once with its reason. The Python API,
the CLI and the server read their defaults from here (sampling defaults live
on SamplingParams, generation/sampling.py, each with its reason there)."""
from __future__ import annotations

import functools

# --- model and context ----------------------------------------------------------
N_CTX = 4096
"""Context length in tokens: DeepSeekMoE 16B's trained context, and llama.cpp's
own default for its tools; the KV cache it sizes is F16 as llama.cpp's."""

MAX_THREADS = 512
"""ggml's GGML_MAX_N_THREADS: its thread pool indexes fixed arrays of this size,
so more threads overrun them (a segfault at --threads 100000)."""

N_BATCH = 2048
"""Most tokens handed to one llama_decode: llama.cpp's default n_batch."""

N_UBATCH = 512
"""llama.cpp's default physical batch; it sizes the compute buffer the planner reserves."""

KV_TYPE = "f16"
"""The KV cache's type: llama.cpp's default (half the memory of f32)."""

FLASH_ATTN = "auto"
"""llama.cpp's default: flash attention where the backend supports it."""

FALLBACK_CHAT_TEMPLATE = "chatml"
"""The chat format used when a GGUF carries no tokenizer.chat_template (llama.cpp's choice too)."""

# --- generation -------------------------------------------------------------------
MAX_TOKENS = 256
"""Tokens generated when a caller gives no limit: shimmy's default for /api/generate.
OpenAI-style routes default to the rest of the context instead, as llama-server."""

# --- serving ----------------------------------------------------------------------
HOST = "127.0.0.1"
"""Loopback: a server is reachable from other machines only when asked."""

PORT = 11435
"""shimmy's port."""

PARALLEL = 4
"""Requests decoded together, one sequence each (llama-server's default of 4 slots)."""

QUEUE = 64
"""Requests waiting beyond those before new ones get 503 with Retry-After."""

MAX_BODY = 1 << 20
"""Bytes of a request body: far above any prompt that fits the context."""

KEEP_ALIVE_S = 300.0
"""Seconds a model loaded on demand stays resident after its last request
(Ollama's default keep_alive, 5 minutes); the server's --model stays until it stops."""

CACHE_RAM = 8 << 30
"""Host RAM per model for conversations whose slot went to another request:
llama-server's --cache-ram default (8192 MiB); only what is saved is used."""

ADMISSION = "unload"
"""When a model to load does not fit beside the resident ones: unload idle
models first (Ollama's way; each model keeps the placement it was planned
with, so its speed), re-planning the newcomer with fit only if that cannot
make room. "offload" re-plans the newcomer first, keeping the residents."""

ADMIT_WAIT_S = 0.0
"""Seconds a request for a model that cannot load while the resident ones are
busy waits for one to go idle: none, a 503 with Retry-After at once (the
client decides; serve --admit-wait queues such requests, as Ollama does)."""

MAX_MODELS = 3
"""Models resident at once (Ollama's default for a CPU machine); beyond it the
least recently used idle one is unloaded."""

MAX_PENDING_CONNECTIONS = 256
"""Accepted connections waiting for a handler thread; beyond them a connection
gets 503 at once, so a flood of idle sockets cannot grow threads or memory."""

HEADER_TIMEOUT = 10.0
"""Seconds a connection may take to send a request's headers, or stay idle
between keep-alive requests, before it is closed (slow and idle clients)."""

WATCHDOG_S = 60.0
"""Seconds a model worker with requests in flight may go without progress
(an engine step, a reply) before it counts as stalled: far above one step's
time, a 512-token prompt chunk of a 16B model on a CPU."""

PREFILL_CHUNK = 512
"""Prompt tokens one sequence may add to a shared engine step, so that a long
prompt never stalls the other sequences for more than one chunk (llama.cpp's n_ubatch)."""


@functools.cache
def threads() -> int:
    """CPU threads for decoding: the physical cores, as llama.cpp's tools default
    to (a second thread per core only competes for the same vector units).
    Counted once: psutil reads sysfs for it (about 0.1 ms), and the model
    pool asks for each resident model's count on every request."""
    import os

    import psutil
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1
