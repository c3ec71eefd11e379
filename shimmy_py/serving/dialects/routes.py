"""The routes: one handler per route, and the table (ROUTES) that names them,
as llama.cpp's server has post_completions, post_tokenize, ... A handler
takes the App and a Request and returns a Response (http/app.py); a route
that runs a model takes a lease on it (State.lease) for as long as its
answer runs, streamed or not.

Adding a model-backed endpoint: a Route here, its handler in its dialect's
module, a Call message (worker/messages.py), and the worker method that
answers it (worker/process.py's CALLS).
"""
from __future__ import annotations

from ..http.app import Route
from . import anthropic, embeddings, ollama, ollama_models, openai, page, responses, shimmy, utility

ROUTES = (
    Route("GET", "/health", utility.health, public=True),
    Route("GET", "/metrics", utility.metrics),
    Route("GET", "/api/models", shimmy.api_models),
    Route("POST", "/api/plan", shimmy.api_plan),
    Route("GET", "/api/ps", ollama_models.ps),
    Route("POST", "/api/generate", shimmy.shimmy_generate, model=True),          # shimmy's, or Ollama's (ollama.py)
    Route("POST", "/api/chat", ollama.chat, model=True),
    Route("GET", "/api/tags", ollama_models.tags),
    Route("POST", "/api/show", ollama_models.show),
    Route("GET", "/api/version", ollama_models.version),
    Route("GET", "/v1/models", openai.v1_models, "openai"),
    Route("POST", "/v1/chat/completions", openai.chat_completions, "openai", model=True),
    Route("POST", "/v1/completions", openai.completions, "openai", model=True),
    Route("POST", "/v1/responses", responses.create, "openai", model=True),
    Route("POST", "/v1/embeddings", embeddings.openai_embeddings, "openai", model=True),
    Route("POST", "/api/embed", embeddings.ollama_embed, model=True),
    Route("POST", "/api/embeddings", embeddings.ollama_embeddings, model=True),
    Route("POST", "/v1/messages", anthropic.messages, "anthropic", model=True),
    Route("POST", "/v1/messages/count_tokens", anthropic.count_tokens, "anthropic", model=True),
    Route("POST", "/tokenize", utility.tokenize, model=True),
    Route("POST", "/detokenize", utility.detokenize, model=True),
    Route("POST", "/apply-template", utility.apply_template, model=True),
    *page.routes(),      # the page at / and its files at /ui/
)
