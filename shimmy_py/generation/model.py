"""`Model`: a GGUF model loaded through libllama, for the REPL, the CLI and
the server.

    >>> with shimmy_py.Model("tiny.gguf") as m:
    ...     print(m.generate("Hello", max_tokens=16, temperature=0).text)

It composes the layers below: the file is validated first (gguf_io), its
placement planned (placement), llama.cpp loads it as planned (native), and
generation runs through its Vocab and Context (this package).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .. import defaults
from ..errors import GenerationError, NativeError, PlacementError, ShimmyError
from ..gguf_io.reader import read_header
from ..gguf_io.validate import check_model
from ..native import log
from ..native.context_handle import ContextSpec
from ..native.model_handle import LoadSpec, ModelHandle
from ..placement.devices import attach_rpc_servers, buffer_devices
from ..placement.make import load_spec, make_plan
from ..placement.options import PlacementOptions
from ..placement.plan import Plan
from ..placement.report import PlacementReport, build_report
from .context import Context
from .inline import InlineSequence
from .loop import Completion, check_request, check_stops, drain, run
from .sampling import SamplingParams
from .vocab import Vocab

_S = SamplingParams   # its field defaults are the sampling defaults, each with its reason


def load_failure(log_lines: list[str]) -> str:
    """The line of llama.cpp's log that says why a load failed: its "error
    loading model: ..." (a missing tensor, a wrong shape), not the closing
    "failed to load model"."""
    for line in log_lines:
        if "error loading model:" in line:
            return line.split("error loading model:", 1)[1].strip()
    errors = [ln.strip() for ln in log_lines if "error" in ln.lower() or "failed" in ln.lower()]
    return errors[0] if errors else "see the log with verbose=True"


class Model:
    """A loaded model with one context.

    n_ctx: context length in tokens (KV cache size), shared by n_seq_max sequences.
    n_seq_max: sequences decoded together (the server's --parallel); each
      holds up to n_ctx / n_seq_max tokens, in one KV cache they share.
    n_threads: CPU threads for decoding; default the physical core count.
    n_batch: most prompt tokens sent to llama_decode at once (llama.cpp's default).
    vocab_only: load only the tokenizer (no weights, no context).
    verbose: show llama.cpp's own log.
    chat_template: a template (Jinja text or llama.cpp name) instead of the GGUF's.
    placement: a Plan (see shimmy_py.make_plan); or the shortcuts cpu_moe,
      n_cpu_moe, fit, vram_budget, overrides (-ot strings), rpc (HOST:PORT
      servers: each one more device), host_ram (HOST:PORT servers that serve
      their host's RAM: experts spill there) and device_capacity ({"RPC1": "8GiB"}:
      plan a device for less); without any, the layers are split between the
      accelerators in proportion to their capacity (all of them on one GPU).
    kv_unified: one KV cache shared by the sequences (default when n_seq_max > 1):
      any mix of sequences then decodes in one pass over the weights. With a
      cache per sequence (False), llama.cpp splits a batch into ubatches of
      consecutive sequence ids with equal token counts: several passes when the
      busy sequences are not 0, 1, 2, ... in order, or when a prompt chunk rides
      beside decoding sequences (benchmarks/batch_order.py measures it).
    kv_type: the KV cache's type, "f16" (llama.cpp's default), "f32", "bf16",
      "q8_0", ... (llama.cpp's -ctk/-ctv; the planner counts 2 bytes per value).
    flash_attn: "auto" (llama.cpp's default), "on" or "off" (its -fa). On the CPU,
      flash attention rounds through F16 and a sequence's logits then move by
      ~1e-3 between batched and single-token decoding; with "off" and an F32 KV
      cache only float32 reassociation remains (~1e-6), what the tests compare under.
    load_mode: llama.cpp's "auto", "none", "mmap", "mlock" or "mmap+mlock". Default:
      "none" when the plan moves tensors to the CPU (llama.cpp's advice: mapped
      files and CPU overrides mix badly), else llama.cpp's own default.
    """

    def __init__(self, path: str | os.PathLike, n_ctx: int = defaults.N_CTX, n_threads: int | None = None,
                 vocab_only: bool = False, n_batch: int = defaults.N_BATCH, n_seq_max: int = 1,
                 verbose: bool = False, chat_template: str | None = None, placement: Plan | None = None,
                 cpu_moe: bool = False, n_cpu_moe: int | None = None, fit: bool = False,
                 vram_budget: int | str | None = None, overrides: Sequence = (), rpc: Sequence[str] = (),
                 load_mode: str | None = None, kv_unified: bool | None = None, kv_type: str = defaults.KV_TYPE,
                 flash_attn: str = defaults.FLASH_ATTN, device_capacity: Sequence = (), host_ram: Sequence[str] = (),
                 measure_reserve: bool | None = None):
        if verbose:
            log.verbose()
        self.path = str(path)
        self.header = read_header(self.path)  # validates the file first
        if not vocab_only:
            check_model(self.header)           # and the values llama.cpp would abort on
        if n_ctx < 1 or n_batch < 1:
            raise ShimmyError(f"n_ctx and n_batch must be >= 1, got {n_ctx} and {n_batch}")
        if not 1 <= n_seq_max <= n_ctx:
            raise ShimmyError(f"n_seq_max must be in 1..n_ctx, got {n_seq_max}")
        self.n_threads = n_threads or defaults.threads()
        if isinstance(self.n_threads, bool) or not isinstance(self.n_threads, int) \
                or not 1 <= self.n_threads <= defaults.MAX_THREADS:
            raise ShimmyError(f"n_threads must be 1 to {defaults.MAX_THREADS} (ggml's limit; this machine has "
                              f"{defaults.threads()} cores), got {n_threads!r}")
        self.plan: Plan | None = None
        self.context: Context | None = None
        spec = LoadSpec(vocab_only=True)
        if not vocab_only:
            attach_rpc_servers([*rpc, *host_ram])
            capacity = tuple(device_capacity.items()) if isinstance(device_capacity, dict) else tuple(device_capacity)
            options = PlacementOptions(cpu_moe, n_cpu_moe, fit, vram_budget, tuple(overrides), tuple(rpc),
                                       None, n_ctx, capacity, flash_attn != "off", tuple(host_ram), n_seq=n_seq_max,
                                       measure_reserve=measure_reserve)
            self.plan = placement if placement is not None else make_plan(self.header, options)
            spec = load_spec(self.plan, load_mode)
        skipped = self.plan.not_loaded() if self.plan else set()
        with log.capture() as self._load_log, log.expected_unused(skipped):  # llama.cpp's account of its buffers
            self._handle = self._load(spec)
            try:
                if not vocab_only:
                    unified = n_seq_max > 1 if kv_unified is None else kv_unified
                    spec = ContextSpec(n_ctx, n_batch, n_seq_max, self.n_threads, unified, kv_type, flash_attn)
                    self.context = Context(self._handle, spec)
            except BaseException:
                self.close()  # the model is freed now, not whenever GC runs
                raise
        self.vocab = Vocab(self._handle, chat_template)

    def _load(self, spec: LoadSpec) -> ModelHandle:
        try:
            return ModelHandle(self.path, spec)
        except NativeError as e:
            raise NativeError(f"{e}: llama.cpp could not load {self.path}: {load_failure(self._load_log)}") from None

    def placement_report(self) -> PlacementReport:
        """llama.cpp's own account of bytes per device (its buffer sizes and
        the overrides it applied) beside the Plan."""
        if self.plan is None:
            raise PlacementError(f"{self.path} was loaded with vocab_only=True: no weights were placed")
        return build_report(self.plan, self._load_log, buffer_devices=buffer_devices())

    # --- lifetime -------------------------------------------------------------
    def close(self) -> None:
        """Frees the context, then the model. Safe to call twice."""
        if self.context is not None:
            self.context.close()
        if getattr(self, "_handle", None) is not None:
            self._handle.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._handle.closed else f"n_ctx={self.n_ctx}"
        return f"Model({self.path!r}, {state})"

    # --- what the model is ------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return self.vocab.n_vocab

    @property
    def n_ctx(self) -> int:
        """Tokens one generation can hold: an equal share of the KV cache."""
        return self.context.n_ctx if self.context is not None else 0

    @property
    def bos(self) -> int:
        return self.vocab.bos

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of `text`; add_special adds BOS as the model asks."""
        return self.vocab.tokenize(text, add_special, parse_special)

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        """Text of token ids; `special` renders special tokens such as BOS."""
        return self.vocab.detokenize(ids, special)

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True,
                            template_kwargs: dict | None = None) -> str:
        """Formats messages with the GGUF's own chat template (see Vocab);
        `template_kwargs`: variables for it, e.g. {"enable_thinking": False}."""
        return self.vocab.apply_chat_template(messages, add_generation_prompt, template_kwargs)

    # --- generation -------------------------------------------------------------
    def _require_context(self) -> Context:
        if self.context is None:
            raise GenerationError(f"{self.path} was loaded with vocab_only=True: it cannot generate")
        return self.context

    def stream_tokens(self, tokens: Sequence[int], max_tokens: int = defaults.MAX_TOKENS,
                      temperature: float = _S.temperature, top_k: int = _S.top_k, top_p: float = _S.top_p,
                      min_p: float = _S.min_p, repeat_penalty: float = _S.repeat_penalty,
                      seed: int | None = None, stop: str | Sequence[str] | None = None):
        """Generates after the prompt `tokens`: yields text pieces as they decode
        (whole UTF-8 characters only); the generator returns the Completion."""
        context = self._require_context()
        self.vocab.check_ids(tokens)
        check_request(tokens, max_tokens, context.n_ctx)
        sampling = SamplingParams(temperature, top_k, top_p, min_p, repeat_penalty, seed=seed)
        sampling.validate(self.n_vocab)
        stops = check_stops(stop)
        return run(InlineSequence(context, list(tokens), sampling), self.vocab, max_tokens, stops)

    def stream(self, prompt: str, **kwargs):
        """stream_tokens() on the tokenized `prompt` (BOS added as the model asks)."""
        if not isinstance(prompt, str) or not prompt:
            raise GenerationError(f"empty prompt: give some text to complete, got {prompt!r}")
        return self.stream_tokens(self.tokenize(prompt), **kwargs)

    def generate(self, prompt: str, max_tokens: int = defaults.MAX_TOKENS, temperature: float = _S.temperature,
                 top_k: int = _S.top_k, top_p: float = _S.top_p, min_p: float = _S.min_p,
                 repeat_penalty: float = _S.repeat_penalty, seed: int | None = None,
                 stop: str | Sequence[str] | None = None) -> Completion:
        """Completes `prompt`; temperature 0 is greedy, a seed repeats a sampled run."""
        return drain(self.stream(prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                 top_p=top_p, min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, stop=stop))

    def chat_stream(self, messages: Sequence[dict], template_kwargs: dict | None = None, **kwargs):
        """stream_tokens() on the chat-formatted `messages` (role/content dicts);
        `template_kwargs`: variables for the chat template."""
        prompt = self.apply_chat_template(messages, template_kwargs=template_kwargs)
        return self.stream_tokens(self.tokenize(prompt, add_special=True, parse_special=True), **kwargs)

    def chat(self, messages: Sequence[dict], **kwargs) -> Completion:
        """The assistant's reply to `messages`; arguments as for generate()."""
        return drain(self.chat_stream(messages, **kwargs))

    def reset(self) -> None:
        """Forgets the KV cache: the next prompt is processed in full, with no
        prefix reused from earlier generations (what a benchmark wants)."""
        with self._require_context().session() as ctx:
            ctx.clear()

    def eval_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits at every position of `tokens` (shape [len, n_vocab]), from a cleared context."""
        context = self._require_context()
        self.vocab.check_ids(tokens)
        if not tokens or len(tokens) > min(context.n_ctx, context.n_batch):
            raise GenerationError(f"eval_logits takes 1 to {min(context.n_ctx, context.n_batch)} tokens")
        with context.session() as ctx:
            ctx.clear()
            ctx.prefill(tokens, logits_all=True)
            return np.stack([ctx.logits(i) for i in range(len(tokens))])
