"""The tokenizer as generation and the API use it: text to token ids and back,
each token's bytes and end-of-generation flag (cached per id: the per-token
path of every stream asks for them), and the chat template."""
from __future__ import annotations

from typing import Sequence

from .. import defaults
from ..errors import GenerationError, NativeError
from ..native.model_handle import ModelHandle, apply_chat_template
from .chat import SpecialTokens, is_jinja, render


class Vocab:
    """The vocabulary of a loaded model."""

    def __init__(self, handle: ModelHandle, chat_template: str | None = None):
        self._handle = handle
        self.n_vocab = handle.n_vocab
        self._chat_template = chat_template
        self._pieces: dict[int, bytes] = {}
        self._special_pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}

    @property
    def bos(self) -> int:
        """The beginning-of-sequence token id."""
        return self._handle.bos

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of `text`; add_special adds BOS as the model asks."""
        return self._handle.tokenize(text, add_special, parse_special)

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        """Text of token ids; `special` renders special tokens such as BOS."""
        self.check_ids(ids)
        return self._handle.detokenize(list(ids), special).decode("utf-8", errors="replace")

    def check_ids(self, ids: Sequence[int]) -> None:
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise GenerationError(f"token ids out of range [0, {self.n_vocab}): {bad[:5]}")

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token's text (cached per id); `special`: a control
        token's own text (<|channel|>, ...) instead of nothing."""
        cache = self._special_pieces if special else self._pieces
        piece = cache.get(token)
        if piece is None:
            piece = cache[token] = self._handle.token_piece(token, special=special)
        return piece

    def special_ids(self, texts) -> frozenset[int]:
        """The ids of the special tokens spelled `texts` (those that are one token)."""
        ids = set()
        for text in texts:
            found = self._handle.tokenize(text, False, True)
            if len(found) == 1:
                ids.add(found[0])
        return frozenset(ids)

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends generation (cached per id)."""
        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = self._handle.is_eog(token)
        return eog

    def special_tokens(self) -> SpecialTokens:
        """BOS/EOS text as a chat template sees them, and whether tokenizing adds them."""
        def text(token: int) -> str:
            return self._handle.token_piece(token, special=True).decode("utf-8", errors="replace") if token >= 0 else ""
        adds_bos, adds_eos = self._handle.adds_bos_eos
        return SpecialTokens(text(self._handle.bos), text(self._handle.eos), adds_bos, adds_eos)

    def template_text(self) -> str:
        """The chat template in use: the one given at load, the GGUF's own, or llama.cpp's "chatml"."""
        return self._chat_template or self._handle.chat_template() or defaults.FALLBACK_CHAT_TEMPLATE

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True,
                            template_kwargs: dict | None = None, tools: list | None = None) -> str:
        """Formats messages with the chat template given at load, else the
        GGUF's own, else llama.cpp's built-in "chatml": Jinja text as
        llama-server renders it (chat.py; `template_kwargs` are its variables,
        `tools` OpenAI's tool list, and messages may carry tool_calls,
        tool_call_id, name and reasoning_content), a template name by
        llama.cpp (which takes no variables and no tools)."""
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or \
                    not isinstance(m.get("content"), (str, type(None))):
                raise GenerationError(f"each message needs a string 'role' and a string (or null) 'content', got {m!r}")
        template = self.template_text()
        if is_jinja(template):
            return render(template, [dict(m) for m in messages], self.special_tokens(), add_generation_prompt,
                          template_kwargs, tools)
        if tools:
            raise GenerationError(f"the chat template {template!r} is a llama.cpp name: it cannot describe tools")
        try:
            return apply_chat_template(template, [(m["role"], m["content"] or "") for m in messages],
                                       add_generation_prompt)
        except NativeError as e:
            raise GenerationError(f"{self._handle.path}: {e}") from None
