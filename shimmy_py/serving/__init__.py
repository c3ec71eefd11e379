"""Serving: the HTTP server (shimmy's API and OpenAI's), request and response
shapes, the continuous-batching engine, metrics and model names."""
