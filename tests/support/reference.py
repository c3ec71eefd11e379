"""A NumPy reference of the DeepSeekMoE forward pass, read from a GGUF file.

Independent of llama.cpp: RMSNorm, RoPE (adjacent pairs, llama.cpp's "norm"
type), causal multi-head attention, a SiLU-gated dense FFN in the leading
layers, and in the others softmax top-k routing over the routed experts (the
top-k probabilities are not renormalised, as DeepSeekMoE) plus the shared experts.
"""
from __future__ import annotations

import numpy as np

from shimmy_py.gguf_io.reader import read_header, tensor_array


class Reference:
    def __init__(self, path):
        h = read_header(path)
        self.w = {t.name: tensor_array(h, t).astype(np.float64) for t in h.tensors}
        a = h.arch_key
        self.n_layer = a("block_count")
        self.n_head, self.n_head_kv = a("attention.head_count"), a("attention.head_count_kv")
        self.n_embd = a("embedding_length")
        self.head_dim = self.n_embd // self.n_head
        self.n_dense = a("leading_dense_block_count")
        self.k = a("expert_used_count")
        self.eps = a("attention.layer_norm_rms_epsilon")
        self.base = a("rope.freq_base")

    def rms(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope(self, x, positions):
        # x: [T, heads, head_dim]; rotate pairs (2i, 2i+1) by pos * base^(-2i/d)
        d = self.head_dim
        inv = self.base ** (-np.arange(0, d, 2) / d)
        ang = positions[:, None] * inv[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def attention(self, x, i):
        w, T = self.w, x.shape[0]
        pos = np.arange(T, dtype=np.float64)
        q = (x @ w[f"blk.{i}.attn_q.weight"].T).reshape(T, self.n_head, self.head_dim)
        k = (x @ w[f"blk.{i}.attn_k.weight"].T).reshape(T, self.n_head_kv, self.head_dim)
        v = (x @ w[f"blk.{i}.attn_v.weight"].T).reshape(T, self.n_head_kv, self.head_dim)
        q, k = self.rope(q, pos), self.rope(k, pos)
        group = self.n_head // self.n_head_kv
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(self.head_dim)
        scores = scores + np.triu(np.full((T, T), -np.inf), 1)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out = np.einsum("hts,shd->thd", p, v).reshape(T, self.n_embd)
        return out @ w[f"blk.{i}.attn_output.weight"].T

    @staticmethod
    def ffn(x, gate, up, down):
        g = x @ gate.T
        return ((g / (1 + np.exp(-g))) * (x @ up.T)) @ down.T

    def moe(self, x, i):
        w, b = self.w, f"blk.{i}."
        logits = x @ w[b + "ffn_gate_inp.weight"].T
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        self.router_probs[i] = probs
        out = np.zeros_like(x)
        for t in range(x.shape[0]):
            for e in np.argsort(-probs[t])[:self.k]:
                out[t] += probs[t, e] * self.ffn(x[t:t + 1], w[b + "ffn_gate_exps.weight"][e],
                                                  w[b + "ffn_up_exps.weight"][e],
                                                  w[b + "ffn_down_exps.weight"][e])[0]
        shared = self.ffn(x, w[b + "ffn_gate_shexp.weight"], w[b + "ffn_up_shexp.weight"],
                          w[b + "ffn_down_shexp.weight"])
        return out + shared

    def routing(self, tokens):
        """{MoE layer: the router's probabilities over the experts (tokens, n_expert)}."""
        self.logits(tokens)
        return dict(self.router_probs)

    def logits(self, tokens):
        w = self.w
        self.router_probs = {}
        h = w["token_embd.weight"][np.asarray(tokens)]
        for i in range(self.n_layer):
            h = h + self.attention(self.rms(h, w[f"blk.{i}.attn_norm.weight"]), i)
            x = self.rms(h, w[f"blk.{i}.ffn_norm.weight"])
            if i < self.n_dense:
                h = h + self.ffn(x, w[f"blk.{i}.ffn_gate.weight"], w[f"blk.{i}.ffn_up.weight"],
                                 w[f"blk.{i}.ffn_down.weight"])
            else:
                h = h + self.moe(x, i)
        return self.rms(h, w["output_norm.weight"]) @ w["output.weight"].T
