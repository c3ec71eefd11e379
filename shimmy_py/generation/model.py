"""`Model`: a GGUF model loaded through libllama, for the REPL, the CLI and
the server.

    >>> with shimmy_py.Model("tiny.gguf") as m:
    ...     print(m.generate("Hello", max_tokens=16, temperature=0).text)

It composes the layers below: the file is validated first (gguf_io), its
placement planned (placement), llama.cpp loads it as planned (native), and
generation runs through its Vocab and Context (this package).
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import fields, replace
from typing import Sequence

import numpy as np

from .. import defaults
from ..errors import GenerationError, NativeError, PlacementError
from ..gguf_io.reader import read_header
from ..gguf_io.validate import check_model
from ..native import log
from ..native.context_handle import ContextSpec
from ..native.model_handle import LoadSpec, ModelHandle
from ..native.tap import Tap
from ..placement.devices import attach_rpc_servers, planned_buffer_devices
from ..placement.machine import load_spec, make_plan
from ..placement.options import PlacementOptions
from ..placement.plan import Plan
from ..placement.report import PlacementReport, build_report
from .chatting import ChatOptions, prepare, structured
from .context import Context
from .experts import ExpertRecorder
from .inline import InlineSequence
from .loop import Completion, check_request, check_stops, drain, relay, run
from .mtp import MtpDrafter
from .options import ModelOptions
from .sampling import SamplingParams, grammar_of_schema
from .spec_modes import SpeculativeOptions, mode_of
from .speculative import Drafter
from .streaming import ExpertStreamer, stream_experts
from .tool_formats import as_tool
from .vocab import Vocab

logger = logging.getLogger("shimmy_py")

SAMPLING_FIELDS = {f.name for f in fields(SamplingParams)}


class Model:
    """A loaded model with one context, loaded as its ModelOptions say.

    `options` (ModelOptions) or its keywords: n_ctx (context length, the KV
    cache, shared by n_seq_max sequences), n_threads, n_batch, n_seq_max,
    kv_type, flash_attn, kv_unified, load_mode, chat_template (see
    ModelOptions), and the placement: `placement` (a Plan to load as it is,
    see shimmy_py.make_plan, or PlacementOptions), or PlacementOptions'
    fields and shortcuts: cpu_moe, n_cpu_moe, fit, vram_budget, overrides
    (-ot strings), rpc (HOST:PORT servers: each one more device), host_ram
    (HOST:PORT servers that serve their host's RAM: experts spill there),
    device_capacity ({"RPC1": "8GiB"}: plan a device for less) and
    measure_reserve; without any, the layers are split between the
    accelerators in proportion to their capacity (all of them on one GPU).

    vocab_only: load only the tokenizer (no weights, no context).
    verbose: show llama.cpp's own log.

    With several sequences (n_seq_max > 1) one KV cache is shared by default
    (kv_unified), so any mix of sequences decodes in one pass over the
    weights; with a cache per sequence, llama.cpp splits a batch into ubatches
    of consecutive sequence ids with equal token counts
    (benchmarks/batch_order.py measures it). On the CPU, flash attention
    rounds through F16 and a sequence's logits then move by ~1e-3 between
    batched and single-token decoding; with flash_attn="off" and an F32 KV
    cache only float32 reassociation remains (~1e-6), what the tests compare under.
    """

    def __init__(self, path: str | os.PathLike, options: ModelOptions | None = None, *, vocab_only: bool = False,
                 verbose: bool = False, placement: Plan | PlacementOptions | None = None, **kwargs):
        if verbose:
            log.verbose()
        self.options = o = ModelOptions.build(options, placement, **kwargs)
        self.path = str(path)
        self.header = read_header(self.path)  # validates the file first
        if not vocab_only:
            check_model(self.header)           # and the values llama.cpp would abort on
        self.n_threads = o.threads
        self.plan: Plan | None = None
        self.context: Context | None = None
        self.streamer: ExpertStreamer | None = None   # the plan's streamed experts (generation/streaming.py)
        self._embedder = None                  # made on first embed()
        self._embedder_lock = threading.Lock()
        self._tracing: Context | None = None   # made on the first generation with trace_experts
        self._mode = mode_of(o.speculative)    # speculative decoding's mode (spec_modes.py) and what it loaded
        self._spec_part = None
        self._parts = contextlib.ExitStack()   # every native part, closed in the reverse of their making
        try:
            self._load_all(o, vocab_only)
        except BaseException:
            self.close()  # the model (and its draft) freed now, not whenever GC runs
            raise

    def _own(self, part):
        """`part` (anything with close()) closed with the model, before what was made before it."""
        if part is not None:
            self._parts.callback(part.close)
        return part

    def _load_all(self, o: ModelOptions, vocab_only: bool) -> None:
        """The speculative mode's part that the plan leaves room for (a draft
        model) first; then the plan, the weights, the context, the mode's
        part over it (the MTP head) and the vocabulary."""
        spec = LoadSpec(vocab_only=True)
        if not vocab_only:
            attach_rpc_servers([*o.placement.rpc, *o.placement.host_ram])
            self._mode.check(self.header, self.path, o.speculative)
            self._spec_part = self._own(self._mode.before_plan(self))
            held = self._mode.held_bytes(self._spec_part)
            self.plan = make_plan(self.header, o.placement, held=held)
            spec = load_spec(self.plan, o.load_mode)
        skipped = self.plan.not_loaded() if self.plan else set()
        with log.capture() as self._load_log, log.expected_unused(skipped):  # llama.cpp's account of its buffers
            self.handle = self._own(self._load(spec))
            if not vocab_only:
                spec = ContextSpec(o.n_ctx, o.n_batch, o.n_seq_max, self.n_threads, o.unified, o.kv_type,
                                   o.flash_attn, nextn="target" if self._mode.nextn else "")
                streams = self.plan.tiers is not None          # experts stream from the file (streaming.py)
                if not streams and o.placement.stream_method != PlacementOptions().stream_method:
                    logger.warning("--stream-method %s: nothing streams in this plan (its host part fits the "
                                       "RAM budget)", o.placement.stream_method)
                self.context = self._own(Context(self.handle, spec, tap=Tap() if o.trace_experts or streams else None))
                self.streamer = self._own(stream_experts(self.path, self.plan.tiers, self.context,
                                                         o.placement.stream_method)) if streams else None
                self._spec_part = self._own(self._mode.after_context(self, spec)) or self._spec_part
        self.vocab = Vocab(self.handle, o.chat_template)
        if not vocab_only:
            self._mode.loaded(self, self._spec_part)

    @property
    def draft(self) -> "Model | None":
        """speculative draft-simple's draft model."""
        return self._spec_part if isinstance(self._spec_part, Model) else None

    @property
    def mtp(self) -> MtpDrafter | None:
        """speculative draft-mtp's drafter over the model's NextN/MTP head."""
        return self._spec_part if isinstance(self._spec_part, MtpDrafter) else None

    def drafter(self, speculative=None) -> Drafter | None:
        """The drafter a generation uses: the model's own (its options'
        speculative), or `speculative`'s (SpeculativeOptions or a type name;
        draft-simple only with the draft model this model was loaded with)."""
        options = self.options.speculative if speculative is None else SpeculativeOptions.of(speculative)
        mode = mode_of(options)
        mode.check(self.header, self.path, options)
        return mode.drafter(self, self._spec_part, options)

    def _load(self, spec: LoadSpec) -> ModelHandle:
        try:
            return ModelHandle(self.path, spec)
        except NativeError as e:
            why = log.load_failure(self._load_log)
            raise NativeError(f"{e}: llama.cpp could not load {self.path}: {why}") from None

    def placement_report(self) -> PlacementReport:
        """llama.cpp's own account of bytes per device (its buffer sizes and
        the overrides it applied) beside the Plan."""
        if self.plan is None:
            raise PlacementError(f"{self.path} was loaded with vocab_only=True: no weights were placed")
        return build_report(self.plan, self._load_log, buffer_devices=planned_buffer_devices(self.plan))

    # --- lifetime -------------------------------------------------------------
    def set_threads(self, n: int) -> None:
        """The CPU threads of the contexts that generate (the main one, the MTP head, the draft model's)
        from their next decode: the server's share of the cores (serving/threads.py), between decodes."""
        for part in (self.context, self._spec_part):
            if part is not None:
                part.set_threads(n)

    def close(self) -> None:
        """Frees every part in the reverse of their making (the embedder and the
        tracing context, the MTP head, the context, the model, its draft).
        Safe to call twice."""
        self._parts.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.handle.closed else f"n_ctx={self.n_ctx}"
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
                      stop: str | Sequence[str] | None = None, sampling: SamplingParams | None = None,
                      special_ids: frozenset = frozenset(), trace_experts: bool | ExpertRecorder = False,
                      speculative=None, **params):
        """Generates after the prompt `tokens`: yields text pieces as they decode
        (whole UTF-8 characters only); the generator returns the Completion.
        `sampling` (SamplingParams), or its fields as keywords over it:
        temperature (0 is greedy), top_k, top_p, min_p, repeat_penalty,
        frequency_penalty, presence_penalty, repeat_last_n, seed (repeats a
        sampled run), logit_bias ({id: bias}), grammar (GBNF text), json_schema
        (a schema the output must be a JSON document of). `trace_experts`
        (True, or an ExpertRecorder of your own: a cap, the router inputs)
        records the routing of every token into the Completion's .experts
        (experts.py), on a second context whose graph has a tap (and decodes
        without speculation). `speculative`: this call's SpeculativeOptions
        or type name ("none" turns it off) instead of the model's; the
        Completion counts drafted and accepted tokens."""
        context = self._require_context()
        self.vocab.check_ids(tokens)
        check_request(tokens, max_tokens, context.n_ctx)
        if "json_schema" in params:
            params["grammar"] = grammar_of_schema(params.pop("json_schema"))
        sampling = SamplingParams.build(sampling, **params)
        sampling.validate(self.n_vocab)
        stops = check_stops(stop)
        recorder = None
        if trace_experts:
            recorder = trace_experts if isinstance(trace_experts, ExpertRecorder) else ExpertRecorder()
            context = self.tracing_context()
        source = InlineSequence(context, list(tokens), sampling, recorder, self.drafter(speculative), max_tokens)
        pieces = run(source, self.vocab, max_tokens, stops, special_ids)
        return pieces if recorder is None else self._traced(pieces, recorder, list(tokens))

    def _traced(self, pieces, recorder: ExpertRecorder, prompt: list[int]):
        completion = yield from pieces
        tokens = [*prompt, *completion.tokens][:recorder.cap]
        # the last token sampled was never fed back, so it has no routing: trace() keeps the routed ones
        completion.experts = recorder.trace(tokens, [self.detokenize([t], special=True) for t in tokens],
                                            len(prompt), self.header.arch_key("expert_count"))
        return completion

    def tracing_context(self) -> Context:
        """The context generations with trace_experts run on: its graph has a
        tap (native/tap.py), which a model never traced does not pay for."""
        if self.options.trace_experts or self.streamer is not None:
            return self._require_context()     # loaded with a tap already
        with self._embedder_lock:
            if self._tracing is None:
                self._require_context()
                o = self.options
                spec = ContextSpec(self.n_ctx, o.n_batch, 1, self.n_threads, True, o.kv_type, o.flash_attn)
                self._tracing = self._own(Context(self.handle, spec, tap=Tap()))
        return self._tracing

    def stream(self, prompt: str, **kwargs):
        """stream_tokens() on the tokenized `prompt` (BOS added as the model asks)."""
        if not isinstance(prompt, str) or not prompt:
            raise GenerationError(f"empty prompt: give some text to complete, got {prompt!r}")
        return self.stream_tokens(self.tokenize(prompt), **kwargs)

    def generate(self, prompt: str, max_tokens: int = defaults.MAX_TOKENS, **kwargs) -> Completion:
        """Completes `prompt`; keywords as for stream_tokens() (stop, sampling
        or its fields: temperature 0 is greedy, a seed repeats a sampled run)."""
        return drain(self.stream(prompt, max_tokens=max_tokens, **kwargs))

    def chat_deltas(self, messages: Sequence[dict], tools: Sequence = (), tool_choice: str = "auto",
                    parallel_tool_calls: bool = True, reasoning_format: str = "auto",
                    template_kwargs: dict | None = None, **kwargs):
        """The reply to `messages` (role/content dicts, tool calls and results
        as OpenAI writes them) as ("content" | "reasoning", text) and
        ("tool_call", ToolCall) deltas; the generator returns the Completion
        (its text the answer, with .reasoning and .tool_calls). `tools`:
        Tool records or OpenAI's tool dicts, called as the model's family
        calls tools (tool_formats.py); `tool_choice` "auto", "none",
        "required" or a tool's name; `template_kwargs`: variables for the
        chat template. Other keywords as for stream_tokens()."""
        options = ChatOptions(tuple(as_tool(t) for t in tools), tool_choice, parallel_tool_calls, reasoning_format,
                              template_kwargs)
        sampling = SamplingParams.build(kwargs.pop("sampling", None),
                                        **{k: kwargs.pop(k) for k in list(kwargs) if k in SAMPLING_FIELDS})
        if "json_schema" in kwargs:
            sampling = replace(sampling, grammar=grammar_of_schema(kwargs.pop("json_schema")))
        turn = prepare(self.vocab, list(messages), options, sampling)
        tokens = self.tokenize(turn.prompt, add_special=True, parse_special=True)
        pieces = self.stream_tokens(tokens, sampling=turn.sampling, special_ids=self.vocab.special_ids(turn.special),
                                    **kwargs)
        return structured(pieces, turn.parser)

    def chat_stream(self, messages: Sequence[dict], **kwargs):
        """The answer's text pieces of chat_deltas() (thinking and tool calls
        are in the Completion it returns)."""
        return relay(self.chat_deltas(messages, **kwargs), lambda d: (d[1],) if d[0] == "content" else ())

    def chat(self, messages: Sequence[dict], **kwargs) -> Completion:
        """The assistant's reply to `messages`; keywords as for chat_deltas()."""
        return drain(self.chat_deltas(messages, **kwargs))

    def embed(self, texts: str | Sequence[str], normalize: bool = True) -> np.ndarray:
        """Embeddings of `texts` (one row each, L2-normalized unless told
        otherwise), pooled as the file says, or mean-pooled (embedding.py)."""
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if not items or not all(isinstance(t, str) for t in items):
            raise GenerationError("embed() takes a string or a non-empty list of strings")
        rows = [self.embedder().embed(self.tokenize(t, parse_special=True), normalize) for t in items]
        return rows[0] if single else np.stack(rows)

    def embedder(self):
        """The embedding context (embedding.py), made on first use."""
        from .embedding import Embedder
        with self._embedder_lock:
            if self._embedder is None:
                self._require_context()
                self._embedder = self._own(Embedder(self.handle, min(self.n_ctx, 8192), self.n_threads))
        return self._embedder

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
