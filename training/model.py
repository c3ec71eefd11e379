"""The stdlib model in PyTorch: DeepSeekMoE's layout computed as llama.cpp's
`deepseek` architecture computes it (and tests/support/reference.py, the
NumPy reference), so that the trained weights run unchanged in libllama.

RMSNorm (eps 1e-6); RoPE on adjacent pairs (llama.cpp's "norm" type, base
10000), so Q and K need no permutation when written; causal attention scaled
by 1/sqrt(head_dim); a SiLU-gated dense FFN in the leading layer; then per
MoE layer a softmax router over the routed experts whose top-k probabilities
weight the chosen experts without renormalising (DeepSeekMoE), plus shared
experts always on (one FFN n_shared x n_ff_exp wide, as the GGUF holds them).
Training adds DeepSeekMoE's expert-level balance loss: alpha * n_expert *
sum_i f_i P_i, with f_i the fraction of routing slots expert i takes and P_i
its mean router probability.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Config:
    n_vocab: int = 4096
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_dense: int = 1
    n_ff: int = 768            # the dense layer's width
    n_ff_exp: int = 128        # one routed expert's width (fine-grained)
    n_expert: int = 16
    n_expert_used: int = 4
    n_shared: int = 2
    n_ctx: int = 512
    rope_base: float = 10000.0
    eps: float = 1e-6

    def as_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(n)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(c: Config, T: int):
    d = c.n_embd // c.n_head
    inv = c.rope_base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def rope(x, cos, sin):
    # x: [B, H, T, d]; rotate (2i, 2i+1) pairs
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        e = c.n_embd
        self.h = c.n_head
        self.q, self.k, self.v, self.o = (nn.Linear(e, e, bias=False) for _ in range(4))

    def forward(self, x, cos, sin):
        B, T, E = x.shape
        split = lambda t: t.view(B, T, self.h, E // self.h).transpose(1, 2)   # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(out.transpose(1, 2).reshape(B, T, E))


class FFN(nn.Module):
    def __init__(self, e: int, ff: int):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(e, ff, bias=False), nn.Linear(e, ff, bias=False), \
            nn.Linear(ff, e, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class MoE(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        e, f, n = c.n_embd, c.n_ff_exp, c.n_expert
        self.c = c
        self.router = nn.Linear(e, n, bias=False)
        self.gate = nn.Parameter(torch.randn(n, f, e) / e ** 0.5)
        self.up = nn.Parameter(torch.randn(n, f, e) / e ** 0.5)
        self.down = nn.Parameter(torch.randn(n, e, f) / f ** 0.5)
        self.shared = FFN(e, f * c.n_shared)

    def forward(self, x):
        c = self.c
        flat = x.reshape(-1, x.shape[-1])
        probs = torch.softmax(self.router(flat).float(), dim=-1)
        top_p, top_i = probs.topk(c.n_expert_used, dim=-1)
        out = self.shared(flat)
        for e in range(c.n_expert):
            rows, slot = (top_i == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            h = flat[rows]
            y = (F.silu(h @ self.gate[e].T) * (h @ self.up[e].T)) @ self.down[e].T
            out = out.index_add(0, rows, y * top_p[rows, slot, None].to(y.dtype))
        picked = torch.zeros_like(probs).scatter_(1, top_i, 1.0)
        f_i = picked.mean(0) * c.n_expert / c.n_expert_used
        balance = (f_i * probs.mean(0)).sum()
        return out.view_as(x), balance, top_i


class Block(nn.Module):
    def __init__(self, c: Config, dense: bool):
        super().__init__()
        self.attn_norm, self.ffn_norm = RMSNorm(c.n_embd, c.eps), RMSNorm(c.n_embd, c.eps)
        self.attn = Attention(c)
        self.ffn = FFN(c.n_embd, c.n_ff) if dense else MoE(c)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        h = self.ffn(self.ffn_norm(x))
        if isinstance(h, tuple):
            return x + h[0], h[1]
        return x + h, None


class StdlibMoE(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.n_vocab, c.n_embd)
        nn.init.normal_(self.embed.weight, std=1.0)
        self.blocks = nn.ModuleList(Block(c, i < c.n_dense) for i in range(c.n_layer))
        self.norm = RMSNorm(c.n_embd, c.eps)
        self.head = nn.Linear(c.n_embd, c.n_vocab, bias=False)
        nn.init.normal_(self.head.weight, std=c.n_embd ** -0.5)

    def forward(self, tokens):
        cos, sin = rope_tables(self.c, tokens.shape[1])
        x = self.embed(tokens)
        balance = []
        for block in self.blocks:
            x, b = block(x, cos, sin)
            if b is not None:
                balance.append(b)
        return self.head(self.norm(x)), torch.stack(balance).mean()

    def arrays(self) -> dict:
        """{GGUF tensor name: float32 numpy array} in numpy's shape (ggml's reversed)."""
        out = {"token_embd.weight": self.embed.weight, "output_norm.weight": self.norm.weight,
               "output.weight": self.head.weight}
        for i, blk in enumerate(self.blocks):
            b = f"blk.{i}."
            out.update({b + "attn_norm.weight": blk.attn_norm.weight, b + "ffn_norm.weight": blk.ffn_norm.weight,
                        b + "attn_q.weight": blk.attn.q.weight, b + "attn_k.weight": blk.attn.k.weight,
                        b + "attn_v.weight": blk.attn.v.weight, b + "attn_output.weight": blk.attn.o.weight})
            f = blk.ffn
            if isinstance(f, FFN):
                out.update({b + "ffn_gate.weight": f.gate.weight, b + "ffn_up.weight": f.up.weight,
                            b + "ffn_down.weight": f.down.weight})
            else:
                out.update({b + "ffn_gate_inp.weight": f.router.weight, b + "ffn_gate_exps.weight": f.gate,
                            b + "ffn_up_exps.weight": f.up, b + "ffn_down_exps.weight": f.down,
                            b + "ffn_gate_shexp.weight": f.shared.gate.weight,
                            b + "ffn_up_shexp.weight": f.shared.up.weight,
                            b + "ffn_down_shexp.weight": f.shared.down.weight})
        return {k: v.detach().float().cpu().numpy() for k, v in out.items()}
