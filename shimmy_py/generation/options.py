"""How a model is loaded and its context made, as one record: `ModelOptions`,
the placement (PlacementOptions) and the context's settings. The Python API
builds it from Model's keywords (`ModelOptions.build`), the CLI from its
flags and `serve --config` from a model's table (fields.py), and the
server's worker receives it whole. Every value is checked when the record is
made, so a bad setting is an error before anything loads."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .. import defaults
from ..errors import ShimmyError
from ..fields import opt
from ..native.context_handle import FLASH_ATTN, KV_TYPES
from ..native.model_handle import LOAD_MODES
from ..placement.options import SHORTCUTS, PlacementOptions
from ..placement.plan import Plan
from .spec_modes import SpeculativeOptions, mode_of


def positive_int(value: Any, what: str = "value") -> int:
    """An integer >= 1, from an int or its decimal text."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ShimmyError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def thread_count(value: Any) -> int:
    """CPU threads: 1 to ggml's limit."""
    n = positive_int(value, "threads")
    if n > defaults.MAX_THREADS:
        raise ShimmyError(f"threads: at most {defaults.MAX_THREADS} (ggml's limit; this machine has "
                          f"{defaults.threads()} cores), got {n}")
    return n


def _switch(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ShimmyError(f"{what} is true or false, got {value!r}")
    return value


def _choice(names, what: str):
    def parse(value: Any) -> str:
        if value not in names:
            raise ShimmyError(f"{what} {value!r}: choose one of {', '.join(names)}")
        return value
    return parse


@dataclass(frozen=True)
class ModelOptions:
    """n_ctx: context length in tokens (the KV cache), shared by n_seq_max
    sequences (each holds n_ctx / n_seq_max). n_threads: CPU threads (None:
    the physical cores). n_batch: most prompt tokens per llama_decode.
    kv_unified: one KV cache for all sequences (None: when n_seq_max > 1).
    kv_type, flash_attn: llama.cpp's -ctk/-ctv and -fa. load_mode:
    llama.cpp's "auto", "none", "mmap", "mlock" or "mmap+mlock" (None: "none"
    when the plan moves tensors to the CPU, else llama.cpp's default).
    chat_template: Jinja text or a llama.cpp template name instead of the GGUF's.
    trace_experts: the context's graph has a tap (experts.py): the server's
    engine counts and returns routing; generate(trace_experts=True) uses it.
    speculative: SpeculativeOptions (speculative.py), or its type's name."""
    placement: PlacementOptions = opt(PlacementOptions(), nested=True)
    speculative: SpeculativeOptions = opt(SpeculativeOptions(), nested=True)
    n_ctx: int = opt(defaults.N_CTX, flags=("--ctx",), parse=lambda v: positive_int(v, "ctx"), key="",
                     help="context length in tokens")
    n_threads: int | None = opt(None, flags=("--threads",), parse=thread_count, key="threads",
                                help="CPU threads (default: the physical cores)")
    kv_type: str = opt(defaults.KV_TYPE, flags=("--kv-type",), parse=_choice(KV_TYPES, "KV cache type"),
                       choices=tuple(sorted(KV_TYPES)), help="KV cache type")
    flash_attn: str = opt(defaults.FLASH_ATTN, flags=("-fa", "--flash-attn"),
                          parse=_choice(FLASH_ATTN, "flash attention"), choices=tuple(sorted(FLASH_ATTN)),
                          help="flash attention")
    load_mode: str | None = opt(None, flags=("--load-mode",), parse=_choice(LOAD_MODES, "load mode"),
                                choices=tuple(LOAD_MODES), help="llama.cpp's load mode (default: none where "
                                                                "experts move to the CPU, else llama.cpp's)")
    trace_experts: bool = opt(False, flags=("--trace-experts",), switch=True,
                              parse=lambda v: _switch(v, "trace_experts"),
                              help="a tap on the graph reads each token's routed experts: /metrics counts them, a "
                                   "request may ask for its own (return_routed_experts); costs a little decode speed")
    n_batch: int = defaults.N_BATCH
    n_seq_max: int = 1
    kv_unified: bool | None = None
    chat_template: str | None = None

    def __post_init__(self):
        positive_int(self.n_ctx, "n_ctx")
        positive_int(self.n_batch, "n_batch")
        if not isinstance(self.n_seq_max, int) or not 1 <= self.n_seq_max <= self.n_ctx:
            raise ShimmyError(f"n_seq_max must be in 1..n_ctx, got {self.n_seq_max!r}")
        if self.n_threads is not None:
            thread_count(self.n_threads)
        _choice(KV_TYPES, "KV cache type")(self.kv_type)
        _choice(FLASH_ATTN, "flash attention")(self.flash_attn)
        if self.load_mode is not None:
            _choice(LOAD_MODES, "load mode")(self.load_mode)
        object.__setattr__(self, "speculative", SpeculativeOptions.of(self.speculative))
        planned = replace(self.placement, n_ctx=self.n_ctx, n_seq=self.n_seq_max, flash_attn=self.flash_attn != "off",
                          mtp=mode_of(self.speculative).nextn)
        object.__setattr__(self, "placement", planned)   # the plan is for this context

    @property
    def threads(self) -> int:
        return self.n_threads or defaults.threads()

    @property
    def unified(self) -> bool:
        return self.n_seq_max > 1 if self.kv_unified is None else self.kv_unified

    def for_draft(self) -> ModelOptions:
        """The options speculative decoding's draft model loads with: wholly
        on the accelerators (this placement's RPC servers and capacities),
        for this context and its sequences, no speculation of its own."""
        where = PlacementOptions(rpc=self.placement.rpc, device_capacity=self.placement.device_capacity,
                                 target_vram=self.placement.target_vram)
        return ModelOptions(placement=where, n_ctx=self.n_ctx, n_threads=self.n_threads, kv_type=self.kv_type,
                            flash_attn=self.flash_attn, n_batch=self.n_batch, n_seq_max=self.n_seq_max,
                            kv_unified=self.kv_unified)

    def with_plan(self, plan: Plan) -> ModelOptions:
        """These options, loading `plan` as it is."""
        return replace(self, placement=replace(self.placement, strategy=plan))

    @classmethod
    def build(cls, options: ModelOptions | None = None, placement: Plan | PlacementOptions | None = None,
              **kwargs) -> ModelOptions:
        """Model's keywords as the record: its own fields (n_ctx, kv_type, ...),
        PlacementOptions' fields (rpc, overrides, ...) and the strategy
        shortcuts (cpu_moe, n_cpu_moe, fit, vram_budget), over `options`;
        `placement`: a Plan to load as it is, or the whole PlacementOptions."""
        base = options or cls()
        own = {f.name for f in fields(cls)} - {"placement"}
        placing = {f.name for f in fields(PlacementOptions)} | set(SHORTCUTS)
        unknown = sorted(set(kwargs) - own - placing)
        if unknown:
            raise TypeError(f"Model() got an unexpected keyword argument {unknown[0]!r}")
        where = base.placement if placement is None else \
            replace(base.placement, strategy=placement) if isinstance(placement, Plan) else placement
        moved = {k: v for k, v in kwargs.items() if k in placing}
        if moved:
            where = replace(where, **moved)
        return replace(base, placement=where, **{k: v for k, v in kwargs.items() if k in own})
