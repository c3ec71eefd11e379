"""The APIs clients speak, one module each: shimmy's /api/generate and
OpenAI's chat and text completions (openai.py, their fields parse.py and
chat_fields.py, their shapes shapes.py), Ollama's (ollama.py,
ollama_models.py), Anthropic's Messages (anthropic.py), OpenAI's Responses
(responses.py), embeddings (embeddings.py); streaming.py answers any of them
whole or as a stream; routes.py is the table of routes."""
