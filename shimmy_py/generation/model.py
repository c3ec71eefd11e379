"""`Model`: a GGUF model loaded through libllama, for the REPL, CLI and server.

    >>> with shimmy_py.Model("tiny.gguf") as m:
    ...     print(m.generate("Hello", max_tokens=16, temperature=0).text)

The file is validated (gguf_file.py) before llama.cpp sees it, so a missing,
foreign or truncated file is a GGUFError naming the cause, not a crash.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from typing import Iterator, Sequence

import numpy as np

from ..native import binding as _llama

from ..native import log as _log
from ..native.owned import Batch, ContextHandle, ModelHandle
from ..native.runtime import lib
from ..errors import GenerationError, NativeError, PlacementError, ShimmyError
from .loop import Completion, check_request, drain, run
from ..gguf_io.reader import read_header
from .inline import InlineSequence
from .kvcache import KVTokens
from ..placement.load import (LOAD_MODES, PlacementOptions, PlacementReport, build_report, make_plan,
                        placement_params)
from ..placement.planner import CPU, Plan
from .sampling import SamplingParams

# Used by chat() when the GGUF carries no tokenizer.chat_template.
FALLBACK_CHAT_TEMPLATE = "chatml"


def default_threads() -> int:
    """Physical cores, as llama.cpp's tools default to."""
    import psutil
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class Model:
    """A loaded model with one context of `n_ctx` tokens.

    n_ctx: context length in tokens (KV cache size), shared by n_seq_max sequences.
    n_seq_max: sequences decoded together (the server's --parallel); each
      holds up to n_ctx / n_seq_max tokens, in one KV cache they share.
    n_threads: CPU threads for decoding; default the physical core count.
    n_batch: most prompt tokens sent to llama_decode at once (llama.cpp's default).
    vocab_only: load only the tokenizer (no weights, no context).
    verbose: show llama.cpp's own log.
    chat_template: a template (Jinja text or llama.cpp name) instead of the GGUF's.
    placement: a Plan (see shimmy_py.make_plan); or the shortcuts cpu_moe,
      n_cpu_moe, fit, vram_budget, overrides (-ot strings) and rpc (HOST:PORT
      servers); without any, every layer goes to the accelerator if there is one.
    kv_unified: one KV cache shared by the sequences (default when n_seq_max > 1):
      any mix of sequences then decodes in one pass over the weights. With a
      cache per sequence (False), llama.cpp splits a batch into ubatches of
      consecutive sequence ids with equal token counts: several passes when the
      busy sequences are not 0, 1, 2, ... in order, or when a prompt chunk rides
      beside decoding sequences (benchmarks/batch_order.py measures it).
    load_mode: llama.cpp's "auto", "none", "mmap", "mlock" or "mmap+mlock". Default:
      "none" when the plan moves tensors to the CPU (llama.cpp's advice: mapped
      files and CPU overrides mix badly), else llama.cpp's own default.
    """

    def __init__(self, path: str | os.PathLike, n_ctx: int = 4096, n_threads: int | None = None,
                 vocab_only: bool = False, n_batch: int = 2048, n_seq_max: int = 1, verbose: bool = False,
                 chat_template: str | None = None, placement: Plan | None = None,
                 cpu_moe: bool = False, n_cpu_moe: int | None = None, fit: bool = False,
                 vram_budget: int | str | None = None, overrides: Sequence = (), rpc: Sequence[str] = (),
                 load_mode: str | None = None, kv_unified: bool | None = None):
        if verbose:
            _log.verbose()
        self.path = str(path)
        self.header = read_header(self.path)  # validates the file first
        if n_ctx < 1 or n_batch < 1:
            raise ShimmyError(f"n_ctx and n_batch must be >= 1, got {n_ctx} and {n_batch}")
        if not 1 <= n_seq_max <= n_ctx:
            raise ShimmyError(f"n_seq_max must be in 1..n_ctx, got {n_seq_max}")
        self.n_threads = n_threads or default_threads()
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._ctx = self._batch = None
        L = lib()
        params = L.llama_model_default_params()
        params.vocab_only = vocab_only
        keepalive = ()
        self.plan: Plan | None = None
        self._load_log: list[str] = []
        if not vocab_only:
            options = PlacementOptions(cpu_moe, n_cpu_moe, fit, vram_budget, tuple(overrides), tuple(rpc),
                                       None, n_ctx)
            self.plan = placement if placement is not None else make_plan(self.header, options)
            keepalive = placement_params(self.plan, params, rpc)
        self._set_load_mode(params, load_mode)
        with _log.capture() as self._load_log:  # llama.cpp's account of its buffers
            self._handle = self._load(params, keepalive)
            try:
                if not vocab_only:
                    self._open_context(n_ctx, n_batch, n_seq_max, kv_unified)
            except BaseException:
                self.close()  # the model is freed now, not whenever GC runs
                raise
        self.n_vocab = L.llama_vocab_n_tokens(self._handle.vocab)
        self._tls = threading.local()  # a piece buffer per thread: server handlers decode concurrently
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._chat_template = chat_template
        # the context one generation can use: an equal share of the KV cache
        self.n_ctx = L.llama_n_ctx(self._ctx.ptr()) // n_seq_max if self._ctx else 0

    def _set_load_mode(self, params, load_mode: str | None) -> None:
        if load_mode is None:
            moved = self.plan is not None and self.plan.accelerator and any(b == CPU for _, b in self.plan.overrides)
            load_mode = "none" if moved else None
        if load_mode is not None:
            if load_mode not in LOAD_MODES:
                raise ShimmyError(f"load_mode {load_mode!r}: choose one of {', '.join(LOAD_MODES)}")
            params.load_mode = LOAD_MODES[load_mode]

    def placement_report(self) -> PlacementReport:
        """llama.cpp's own account of bytes per device (its buffer sizes and
        the overrides it applied) beside the Plan."""
        if self.plan is None:
            raise PlacementError(f"{self.path} was loaded with vocab_only=True: no weights were placed")
        return build_report(self.plan, self._load_log)

    def _load(self, params, keepalive) -> ModelHandle:
        try:
            return ModelHandle(self.path, params, keepalive)
        except NativeError as e:
            errors = [ln for ln in self._load_log if "error" in ln.lower() or "failed" in ln.lower()]
            detail = errors[-1].strip() if errors else "see the log with verbose=True"
            raise NativeError(f"{e}: llama.cpp could not load {self.path}: {detail}") from None

    def _open_context(self, n_ctx: int, n_batch: int, n_seq_max: int, kv_unified: bool | None) -> None:
        L = lib()
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_seq_max = n_ctx, n_batch, n_seq_max
        cp.n_ubatch = min(cp.n_ubatch, n_batch)
        cp.n_threads = cp.n_threads_batch = self.n_threads
        cp.kv_unified = n_seq_max > 1 if kv_unified is None else kv_unified
        cp.no_perf = True
        self._ctx = ContextHandle(self._handle, cp)
        self._batch = Batch(n_batch)
        self.n_batch, self.n_seq_max = n_batch, n_seq_max
        self.kv = KVTokens(n_seq_max)   # what each sequence's cache holds, for prompt reuse

    # --- lifetime -------------------------------------------------------------
    def close(self) -> None:
        """Frees the batch and context, then the model. Safe to call twice."""
        for child in (self._batch, self._ctx):
            if child is not None:
                child.close()
        if getattr(self, "_handle", None) is not None:
            self._handle.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._handle.closed else f"n_ctx={self.n_ctx}"
        return f"Model({self.path!r}, {state})"

    # --- tokens and text ------------------------------------------------------
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of `text`; add_special adds BOS as the model asks."""
        raw = text.encode("utf-8")
        L, vocab = lib(), self._handle.vocab
        cap = len(raw) + 8
        buf = (_llama.llama_token * cap)()
        n = L.llama_tokenize(vocab, raw, len(raw), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (_llama.llama_token * cap)()
            n = L.llama_tokenize(vocab, raw, len(raw), buf, cap, add_special, parse_special)
        if n < 0:
            raise NativeError(f"llama_tokenize failed ({n}) on {len(raw)} bytes ({self.path})")
        return list(buf[:n])

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        """Text of token ids; `special` renders special tokens such as BOS."""
        self._check_ids(ids)
        L, vocab = lib(), self._handle.vocab
        arr = (_llama.llama_token * max(1, len(ids)))(*ids)
        cap = 8 * len(ids) + 16
        buf = ctypes.create_string_buffer(cap)
        n = L.llama_detokenize(vocab, arr, len(ids), buf, cap, False, special)
        if n < 0:
            cap = -n
            buf = ctypes.create_string_buffer(cap)
            n = L.llama_detokenize(vocab, arr, len(ids), buf, cap, False, special)
        return buf.raw[:n].decode("utf-8", errors="replace")

    def _check_ids(self, ids: Sequence[int]) -> None:
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise GenerationError(f"token ids out of range [0, {self.n_vocab}): {bad[:5]}")

    # --- the engine side used by generate.run --------------------------------
    def token_bytes(self, token: int) -> bytes:
        """The bytes of one token's text. Cached per id: the per-token path of
        every stream calls it, and each ctypes call is a GIL hand-off."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._token_to_piece(token)
        return piece

    def _token_to_piece(self, token: int) -> bytes:
        buf = getattr(self._tls, "piece_buf", None)
        if buf is None:
            buf = self._tls.piece_buf = ctypes.create_string_buffer(256)
        n = lib().llama_token_to_piece(self._handle.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lib().llama_token_to_piece(self._handle.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    @property
    def bos(self) -> int:
        """The beginning-of-sequence token id."""
        return lib().llama_vocab_bos(self._handle.vocab)

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends generation (cached per id, as token_bytes)."""
        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = bool(lib().llama_vocab_is_eog(self._handle.vocab, token))
        return eog

    @contextlib.contextmanager
    def session(self) -> Iterator[ContextHandle]:
        """Exclusive use of the context for one generation."""
        self._require_context()
        if self._owner == threading.get_ident():
            raise GenerationError("this thread is already generating with this model: "
                                  "finish or close the other stream first")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield self._ctx
            finally:
                self._owner = None

    def _require_context(self) -> None:
        if self._ctx is None:
            raise GenerationError(f"{self.path} was loaded with vocab_only=True: it cannot generate")
        self._ctx.ptr()  # raises once closed

    def prefill(self, ctx: ContextHandle, tokens: Sequence[int], logits_all: bool = False,
                start: int = 0) -> None:
        """Decodes `tokens` from position `start` (of sequence 0) in chunks of n_batch."""
        for first in range(0, len(tokens), self.n_batch):
            chunk = tokens[first:first + self.n_batch]
            last = first + len(chunk) == len(tokens)
            want = [logits_all or (last and i == len(chunk) - 1) for i in range(len(chunk))]
            pos = start + first
            self.decode_batch(ctx, chunk, range(pos, pos + len(chunk)), [0] * len(chunk), want)

    def decode_batch(self, ctx: ContextHandle, tokens, positions, seqs, want_logits) -> None:
        """One llama_decode of tokens from one or more sequences; records what
        each sequence's cache now holds (self.kv)."""
        self._batch.set(tokens, positions, seqs, want_logits)
        try:
            ctx.decode(self._batch)
        except BaseException:
            self.kv.forget()   # a failed decode leaves the cache's contents unknown
            raise
        if self.n_seq_max == 1:
            self.kv.extend(0, tokens)
        else:
            for tok, seq in zip(tokens, seqs):
                self.kv.extend(seq, (tok,))

    def step(self, ctx: ContextHandle, token: int, pos: int) -> None:
        self.decode_batch(ctx, (token,), (pos,), (0,), (True,))

    def reset(self) -> None:
        """Forgets the KV cache: the next prompt is processed in full, with no
        prefix reused from earlier generations (what a benchmark wants)."""
        with self.session() as ctx:
            self.clear_kv(ctx)

    def clear_kv(self, ctx: ContextHandle) -> None:
        """Empties the KV cache of `ctx` (held through session()) and its record."""
        ctx.clear()
        self.kv.forget()

    # --- generation -------------------------------------------------------------
    def stream_tokens(self, tokens: Sequence[int], max_tokens: int = 256, temperature: float = 0.8,
                      top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                      repeat_penalty: float = 1.0, seed: int | None = None,
                      stop: str | Sequence[str] | None = None):
        """Generates after the prompt `tokens`: yields text pieces as they decode
        (whole UTF-8 characters only); the generator returns the Completion."""
        self._require_context()
        self._check_ids(tokens)
        check_request(tokens, max_tokens, self.n_ctx)
        sampling = SamplingParams(temperature, top_k, top_p, min_p, repeat_penalty, seed=seed)
        sampling.validate(self.n_vocab)
        stops = [stop] if isinstance(stop, str) else list(stop or ())
        return run(InlineSequence(self, list(tokens), sampling), self, max_tokens, stops)

    def stream(self, prompt: str, **kwargs):
        """stream_tokens() on the tokenized `prompt` (BOS added as the model asks)."""
        if not isinstance(prompt, str) or not prompt:
            raise GenerationError(f"empty prompt: give some text to complete, got {prompt!r}")
        return self.stream_tokens(self.tokenize(prompt), **kwargs)

    def generate(self, prompt: str, max_tokens: int = 256, temperature: float = 0.8, top_k: int = 40,
                 top_p: float = 0.95, min_p: float = 0.05, repeat_penalty: float = 1.0,
                 seed: int | None = None, stop: str | Sequence[str] | None = None) -> Completion:
        """Completes `prompt`; temperature 0 is greedy, a seed repeats a sampled run."""
        return drain(self.stream(prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                 top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, stop=stop))

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """Formats messages with the GGUF's own chat template through
        llama_chat_apply_template; without one, llama.cpp's built-in "chatml"."""
        tmpl = self._chat_template
        if tmpl is None:
            own = lib().llama_model_chat_template(self._handle.ptr(), None)
            tmpl = own.decode() if own else FALLBACK_CHAT_TEMPLATE
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise GenerationError(f"each message needs string 'role' and 'content', got {m!r}")
        keep = [(m["role"].encode(), m["content"].encode()) for m in messages]
        arr = (_llama.llama_chat_message * max(1, len(keep)))(*[_llama.llama_chat_message(r, c) for r, c in keep])
        cap = 2 * sum(len(r) + len(c) for r, c in keep) + 256
        for _ in range(2):
            buf = ctypes.create_string_buffer(cap)
            n = lib().llama_chat_apply_template(tmpl.encode(), arr, len(keep), add_generation_prompt, buf, cap)
            if n < 0:
                raise GenerationError(f"llama_chat_apply_template does not support the template of {self.path}")
            if n <= cap:
                return buf.raw[:n].decode("utf-8", errors="replace")
            cap = n
        raise NativeError("llama_chat_apply_template kept growing its output")

    def chat_stream(self, messages: Sequence[dict], **kwargs):
        """stream_tokens() on the chat-formatted `messages` (role/content dicts)."""
        prompt = self.apply_chat_template(messages)
        return self.stream_tokens(self.tokenize(prompt, add_special=True, parse_special=True), **kwargs)

    def chat(self, messages: Sequence[dict], **kwargs) -> Completion:
        """The assistant's reply to `messages`; arguments as for generate()."""
        return drain(self.chat_stream(messages, **kwargs))

    def eval_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits at every position of `tokens` (shape [len, n_vocab]), from a cleared context."""
        self._check_ids(tokens)
        if not tokens or len(tokens) > min(self.n_ctx, self.n_batch):
            raise GenerationError(f"eval_logits takes 1 to {min(self.n_ctx, self.n_batch)} tokens")
        with self.session() as ctx:
            self.clear_kv(ctx)
            self.prefill(ctx, tokens, logits_all=True)
            return np.stack([ctx.logits(i, self.n_vocab) for i in range(len(tokens))])
