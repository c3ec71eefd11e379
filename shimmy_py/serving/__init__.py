"""Serving: `shimmy-py serve`, in four rooms by job.

- `http/`: the transport (one asyncio loop, h11), the HTTP policy, the
  application (`App`: route table, Host/Origin/key checks, errors as JSON).
- `dialects/`: one module per API people's clients speak (shimmy's and
  OpenAI's chat/completions, Ollama, Anthropic, Responses, embeddings), each
  turning a body into a job and a result into the dialect's shapes.
- `models/`: which models exist and which are resident: names and files,
  admission within the memory budget, the pool, leases, keep-alive, metrics.
- `worker/`: the model process and its supervisor, the messages between them.

`server.py` puts them together; `config.py` is the record `serve` runs with;
`durations.py` reads keep-alive durations as Ollama writes them.
The batching engine is generation's (`generation/engine.py`): the worker
drives it, and nothing under it knows HTTP.
"""
