"""The tensor table of a GGUF model: each weight's layer, role and size, and the
hyper-parameters that memory accounting needs. No weight data is read.

Roles: routed_experts, shared_experts, router, attention (or a recurrent
layer's mixer, ssm_*), dense_ffn, norm,
token_embd, output, other (an unknown name is kept, never dropped), and mtp:
every tensor of a multi-token-prediction (NextN) block, which GLM-4.5 files
carry as their last layer and llama.cpp does not load unless asked to
(llama_model_params.load_mtp, off by default): it takes no memory anywhere.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping

from ..errors import GGUFError
from .arch import facts
from .format import ATTENTION, LLM, RECURRENT_LAYERS, SSM, key
from .reader import GGUFHeader, read_header
from .validate import check_model

ROLES = ("token_embd", "attention", "norm", "dense_ffn", "router", "shared_experts",
         "routed_experts", "output", "other", "mtp")

_LAYER = re.compile(r"^blk\.(\d+)\.")
_RULES = [  # first match wins; applied to the name without its "blk.N." prefix
    ("routed_experts", re.compile(r"^ffn_(gate|up|down|gate_up)_(ch)?exps(\.|$)")),
    ("shared_experts", re.compile(r"^ffn_(gate_inp_shexp|(gate|up|down|gate_up)_shexp)(\.|$)")),
    ("router", re.compile(r"^(ffn_gate_inp|exp_probs_b)(\.|$)")),
    ("norm", re.compile(r"norm(\.|$)")),
    ("attention", re.compile(r"^(attn_|ssm_)")),          # the recurrent mixer counts as attention
    ("dense_ffn", re.compile(r"^ffn_(gate|up|down|gate_up)(\.|$)")),
    ("token_embd", re.compile(r"^token_embd(\.|$)")),
    ("output", re.compile(r"^output(\.|$)")),
]


def classify(name: str) -> tuple[int | None, str]:
    """(layer index or None, role) of a tensor name."""
    m = _LAYER.match(name)
    layer = int(m.group(1)) if m else None
    base = name[m.end():] if m else name
    for role, pattern in _RULES:
        if pattern.search(base):
            return layer, role
    return layer, "other"


@dataclass(frozen=True)
class Tensor:
    name: str
    layer: int | None
    role: str
    ggml_type: str
    shape: tuple[int, ...]
    nbytes: int
    n_params: int


@dataclass(frozen=True)
class Hparams:
    """What memory accounting needs, from the GGUF metadata."""
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ctx_train: int
    n_vocab: int
    n_expert: int
    n_expert_used: int
    n_expert_shared: int
    n_layer_dense_lead: int
    n_swa: int = 0                      # sliding window of the SWA layers (0: none)
    swa_layers: frozenset = frozenset()  # layers with sliding-window attention
    n_layer_nextn: int = 0              # trailing multi-token-prediction blocks (in n_layer; no KV cache)
    recurrent_layers: frozenset = frozenset()  # layers with recurrent state instead of a KV cache
    state_values: int = 0               # F32 values of recurrent state per sequence and layer (conv + ssm)

    @property
    def n_layer_trunk(self) -> int:
        """The layers a forward pass runs (and caches): all but the NextN blocks."""
        return self.n_layer - self.n_layer_nextn

    def kv_cells(self, layer: int, n_ctx: int, n_ubatch: int = 512, n_seq: int = 1, swa_full: bool = True) -> int:
        """Cells of `layer`'s KV cache, as llama.cpp sizes them: the context
        padded to 256; for a sliding-window layer without swa_full (llama.cpp's
        library default keeps it full, which prompt reuse needs) its window
        (per sequence in a unified cache) plus a ubatch, padded to 256."""
        base = -(-n_ctx // 256) * 256
        if layer in self.swa_layers and self.n_swa and not swa_full:
            return min(base, -(-min(base, self.n_swa * n_seq + n_ubatch) // 256) * 256)
        return base

    def kv_layer_bytes(self, layer: int, n_ctx: int, bytes_per_value: int = 2, n_seq: int = 1) -> int:
        """One layer's KV cache for n_ctx tokens (F16 by default, as llama.cpp),
        or for a recurrent layer its state: F32, one row per sequence whatever
        the context (llama.cpp's llama_memory_recurrent)."""
        if layer in self.recurrent_layers:
            return 4 * self.state_values * max(1, n_seq)
        return self.kv_cells(layer, n_ctx) * self.n_head_kv * (self.head_dim_k + self.head_dim_v) * bytes_per_value

    def kv_bytes(self, n_ctx: int, bytes_per_value: int = 2, n_seq: int = 1) -> int:
        """The whole KV cache (and recurrent state) for n_ctx tokens over n_seq sequences."""
        return sum(self.kv_layer_bytes(i, n_ctx, bytes_per_value, n_seq) for i in range(self.n_layer_trunk))


def _int(meta: Mapping, key: str, default: int = 0) -> int:
    value = meta.get(key, default)
    if isinstance(value, list):  # per-layer arrays: the largest entry bounds memory
        value = max(value) if value else default
    return int(value)


def _swa_layers(meta: Mapping, arch: str, n_layer: int) -> frozenset:
    pattern = meta.get(key(ATTENTION.SLIDING_WINDOW_PATTERN, arch), facts(arch).swa_pattern)
    if isinstance(pattern, list):                      # a flag per layer
        return frozenset(i for i, on in enumerate(pattern) if on)
    n = int(pattern)
    return frozenset(i for i in range(n_layer) if n == 0 or i % n < n - 1)


def _recurrent(meta: Mapping, arch: str, n_trunk: int) -> tuple[frozenset, int]:
    """The recurrent layers and their state per sequence, as llama.cpp's
    hparams.is_recr / n_embd_r() + n_embd_s() (gated delta net, Mamba-2 style):
    conv state (d_conv - 1) x (d_inner + 2 x groups x d_state), ssm state d_state x d_inner."""
    interval = facts(arch).recurrent_interval
    if not interval:
        return frozenset(), 0
    flags = meta.get(key(RECURRENT_LAYERS, arch))
    if isinstance(flags, list):
        layers = frozenset(i for i, on in enumerate(flags) if on and i < n_trunk)
    else:
        n = _int(meta, key(LLM.FULL_ATTENTION_INTERVAL, arch), interval) or 1
        layers = frozenset(i for i in range(n_trunk) if (i + 1) % n)
    d_conv, d_inner = _int(meta, key(SSM.CONV_KERNEL, arch)), _int(meta, key(SSM.INNER_SIZE, arch))
    d_state, groups = _int(meta, key(SSM.STATE_SIZE, arch)), _int(meta, key(SSM.GROUP_COUNT, arch))
    return layers, max(0, d_conv - 1) * (d_inner + 2 * groups * d_state) + d_state * d_inner


def read_hparams(h: GGUFHeader) -> Hparams:
    arch = h.architecture
    if not arch:
        raise GGUFError(f"{h.path}: no general.architecture in the metadata")
    m = h.metadata

    def get(template: str, default: int = 0) -> int:
        return _int(m, key(template, arch), default)
    n_embd = get(LLM.EMBEDDING_LENGTH)
    n_head = get(ATTENTION.HEAD_COUNT, 1) or 1
    n_head_kv = get(ATTENTION.HEAD_COUNT_KV, n_head) or n_head
    head_dim = n_embd // n_head if n_head else 0
    embd = next((t for t in h.tensors if t.name == "token_embd.weight"), None)
    n_vocab = embd.shape[1] if embd is not None and len(embd.shape) > 1 else get(LLM.VOCAB_SIZE)
    n_layer = get(LLM.BLOCK_COUNT)
    n_swa = get(ATTENTION.SLIDING_WINDOW)
    head_dim_k = get(ATTENTION.KEY_LENGTH, head_dim)
    head_dim_v = get(ATTENTION.VALUE_LENGTH, head_dim)
    if get(ATTENTION.KV_LORA_RANK) and get(ATTENTION.KEY_LENGTH_MLA):
        head_dim_v = 0   # multi-head latent attention caches one latent (key_length wide): values are a view of it
    nextn = get(LLM.NEXTN_PREDICT_LAYERS)
    recurrent, state = _recurrent(m, arch, n_layer - nextn)
    return Hparams(
        recurrent_layers=recurrent, state_values=state,
        n_swa=n_swa, swa_layers=_swa_layers(m, arch, n_layer) if n_swa else frozenset(),
        arch=arch, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv,
        head_dim_k=head_dim_k, head_dim_v=head_dim_v,
        n_ctx_train=get(LLM.CONTEXT_LENGTH), n_vocab=n_vocab,
        n_expert=get(LLM.EXPERT_COUNT), n_expert_used=get(LLM.EXPERT_USED_COUNT),
        n_expert_shared=get(LLM.EXPERT_SHARED_COUNT), n_layer_dense_lead=get(LLM.LEADING_DENSE_BLOCK_COUNT),
        n_layer_nextn=nextn,
    )


@dataclass(frozen=True)
class Summary:
    nbytes: int
    n_params: int
    n_active: int  # parameters used per token (routed experts: n_expert_used of n_expert)


@dataclass(frozen=True)
class TensorTable:
    path: str
    hparams: Hparams
    tensors: tuple[Tensor, ...]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def active_fraction(self, t: Tensor) -> float:
        hp = self.hparams
        if t.role == "routed_experts" and hp.n_expert:
            return hp.n_expert_used / hp.n_expert
        return 0.0 if t.role == "mtp" else 1.0

    def _summarise(self, key) -> dict:
        acc: dict = defaultdict(lambda: [0, 0, 0.0])
        for t in self.tensors:
            row = acc[key(t)]
            row[0] += t.nbytes
            row[1] += t.n_params
            row[2] += t.n_params * self.active_fraction(t)
        return {k: Summary(b, p, round(a)) for k, (b, p, a) in acc.items()}

    def by_role(self) -> dict[str, Summary]:
        found = self._summarise(lambda t: t.role)
        return {r: found[r] for r in ROLES if r in found}

    def by_layer(self) -> dict[int | None, Summary]:
        found = self._summarise(lambda t: t.layer)
        return dict(sorted(found.items(), key=lambda kv: -1 if kv[0] is None else kv[0]))

    def total(self) -> Summary:
        rows = self.by_role().values()
        return Summary(sum(r.nbytes for r in rows), sum(r.n_params for r in rows), sum(r.n_active for r in rows))


def read_table(source: str | GGUFHeader | TensorTable) -> TensorTable:
    """The classified tensor table of a GGUF file (a path, or its header
    already read, so that a caller who validated the file parses it once; a
    table, such as a retyped one, is its own)."""
    if isinstance(source, TensorTable):
        return source
    h = source if isinstance(source, GGUFHeader) else read_header(source)
    check_model(h)
    hparams = read_hparams(h)
    tensors = []
    for info in h.tensors:
        layer, role = classify(info.name)
        if layer is not None and layer >= hparams.n_layer_trunk:
            role = "mtp"
        tensors.append(Tensor(info.name, layer, role, info.ggml_type.name, info.shape, info.nbytes,
                              info.n_elements))
    return TensorTable(h.path, hparams, tuple(tensors))
