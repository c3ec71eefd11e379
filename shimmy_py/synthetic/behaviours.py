"""Models that do something on purpose: a synthetic family's layout with
weights set by hand, so that a test can rely on a behaviour random weights
never show (calling a tool, thinking first, answering after a tool result).

`tool_caller` is a Qwen3-MoE (qwen3moe layout, Qwen3's template and its
added tokens at their real ids) that, with greedy or near-greedy sampling:

  - thinks first: after the prompt's "assistant\\n" it writes
    "<think>Checking weather</think>\\n\\n" (skipped where the template
    already closed the think block, enable_thinking false);
  - when tools are offered and no tool result is in the conversation, then
    writes "<tool_call>\n": the tool grammar (lazy, switched on by that
    text, here and in llama-server) holds the call to the tool's schema
    (greedy: the arguments as short as the schema allows; sampled: the
    free characters of strings and numbers are the random part's choice);
  - otherwise (no tools, or after a tool result) answers "It is sunny."

How the weights do it. The residual stream (64 wide) has a constant
dimension B, one dimension per token the script names (a one-hot code;
every other token gets a random unit vector in dimensions of its own), and
two flag dimensions T and S. All feed-forward output (ffn_down_exps) and
all attention except layer 0's is zero, so the last position's stream is
its token's embedding plus the flags:

  T  "tools were offered": layer 0's head 2 attends from every position
     (its query: B) to <tool_call> tokens (its key; the template puts that
     tag into the system message that lists the tools), and copies 1 into T;
  S  "a tool result was seen": head 0 does the same for <tool_response>.

The query and key live on the head's last rotary pair, whose rotation
(Qwen3's base 1e6, 16-dimension heads) is 6e-6 rad per position: a match
scores 64 wherever it is in the context, a non-match 0, so the head's
output is 1 if the tag is anywhere before, else 0. The output head then
reads (next token, from the last token's code, and the flags): a chain
"\\n" -> <think> -> "Checking" -> " weather" -> </think> -> "\\n\\n", at
"\\n\\n" <tool_call> if T and not S, else "It" -> " is" -> " sunny" -> "."
-> <|im_end|>, and </tool_call> -> <|im_end|>. Everywhere else <|im_end|>
is the most likely token and '"', </tool_call>, '}', ']' the next, so that
free text ends at once and a grammar's strings, objects, arrays and calls
close as soon as the schema allows. A small random part (0.05) keeps the rest of the
distribution from being flat.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType

from .families import write
from .layouts import Shape

# token ids in the Qwen2 vocabulary file with Qwen3's added tokens (vocabularies.QWEN3_ADDED)
NL, NL2, THINK, THINK_END = 198, 271, 151667, 151668
CHECKING, WEATHER, IT, IS, SUNNY, DOT = 40129, 9104, 2132, 374, 39698, 13
TOOL_CALL, TOOL_CALL_END, TOOL_RESPONSE, IM_END = 151657, 151658, 151665, 151645
QUOTE, BRACE, BRACKET = 1, 92, 60

CHAIN = {NL: THINK, THINK: CHECKING, CHECKING: WEATHER, WEATHER: THINK_END, THINK_END: NL2,
         IT: IS, IS: SUNNY, SUNNY: DOT, DOT: IM_END, TOOL_CALL: NL, TOOL_CALL_END: IM_END, QUOTE: IM_END}
CODED = sorted({*CHAIN, NL2, TOOL_CALL, TOOL_RESPONSE})       # the tokens with a one-hot code
B, T, S = 0, 1, 2                                             # residual dimensions
FIRST_CODE = 4
SHAPE = Shape(n_embd=64, n_layer=2, n_head=4, n_head_kv=2)
STEP, PREFER = 16.0, {IM_END: 7.0, QUOTE: 6.5, TOOL_CALL_END: 5.0, BRACE: 4.0, BRACKET: 3.0}


def tool_caller(out: str | os.PathLike, seed: int = 0) -> Path:
    """Writes the tool-calling Qwen3-MoE described above."""
    return write(out, "qwen3moe", seed=seed, shape=SHAPE, name="tool-caller", arrays=Weights(seed).array)


def looper(out: str | os.PathLike, seed: int = 0, family: str = "deepseek", shape: Shape = Shape(),
           dtype: GGMLQuantizationType = GGMLQuantizationType.F32, mtp_loops: bool = True,
           vocab: str | os.PathLike | None = None) -> Path:
    """Writes a model of `family` whose greedy output enters a loop of
    LOOP_LENGTH tokens at once and never leaves it: text that repeats, for
    n-gram speculation (speculative.py) to draft from. Its layers keep their
    random weights; the token embeddings are LOOP_SCALE times longer than
    anything a layer adds (each layer reads its input through a norm), so the
    last position's stream points along its token's embedding, and the head
    maps each loop token to the next one and every other token to the
    loop's first (every non-loop embedding shares one direction for it).
    Where the family has a NextN/MTP block (glm4moe), it predicts the loop
    too: its eh_proj passes the normed token embedding on, LOOP_SCALE times
    longer than what its attention and experts add, so the shared head (the
    model's own) maps it to the token after next (with mtp_loops=False the
    block keeps random weights: drafts that are mostly wrong). `shape` and
    `dtype` as families.write takes them (a real-size looper costs what a
    random model of its shape costs per token); `vocab`: another tokenizer
    GGUF than the family's (a looper of the trained stdlib model's)."""
    return write(out, family, seed=seed, shape=shape, dtype=dtype, name=f"looper-{family}",
                 arrays=Loop(seed, mtp_loops).array, vocab=vocab)


LOOP_TOKENS = tuple(range(1000, 1000 + 24))   # ordinary pieces in every family's vocabulary
LOOP_LENGTH, LOOP_SCALE, LOOP_STEP = len(LOOP_TOKENS), 100.0, 16.0


class Loop:
    def __init__(self, seed: int, mtp_loops: bool = True):
        self.rng = np.random.default_rng(seed)
        self.mtp_loops = mtp_loops
        self.emb: np.ndarray | None = None

    def array(self, name: str, shape: tuple) -> np.ndarray | None:
        rows = tuple(reversed(shape))
        if name == "token_embd.weight":
            return self.embeddings(rows)
        if name == "output.weight":
            return self.head(rows)
        if ".nextn." in name and self.mtp_loops:
            return self.nextn(name, rows)
        return None

    def nextn(self, name: str, rows) -> np.ndarray | None:
        if name.endswith("eh_proj.weight"):         # [token embedding | hidden state] -> the token's, scaled
            e = rows[0]
            w = np.zeros(rows, np.float32)
            w[:, :e] = LOOP_SCALE * np.eye(e, dtype=np.float32)
            return w
        if name.endswith("norm.weight"):
            return np.ones(rows, np.float32)
        return None

    def embeddings(self, rows) -> np.ndarray:
        n_vocab, e = rows
        x = self.rng.standard_normal(rows, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        common = x[0].copy()                      # the direction every non-loop token shares
        x[list(LOOP_TOKENS)] -= np.outer(x[list(LOOP_TOKENS)] @ common, common)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        others = np.ones(n_vocab, bool)
        others[list(LOOP_TOKENS)] = False
        x[others] = 0.6 * x[others] + 0.8 * common
        self.emb, self.common = x.copy(), common
        return LOOP_SCALE * x

    def head(self, rows) -> np.ndarray:
        assert self.emb is not None, "token_embd is written before output"
        w = 0.05 * self.rng.standard_normal(rows, dtype=np.float32)
        for i, tok in enumerate(LOOP_TOKENS):
            w[LOOP_TOKENS[(i + 1) % LOOP_LENGTH]] += LOOP_STEP * self.emb[tok]
        w[LOOP_TOKENS[0]] += LOOP_STEP * self.common
        return w


BEHAVIOURS = {"tool-caller": tool_caller, "looper": looper}


class Weights:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.e = SHAPE.n_embd
        self.code = {tok: FIRST_CODE + i for i, tok in enumerate(CODED)}
        self.free = FIRST_CODE + len(CODED)                     # first dimension of the random codes
        assert self.free + 16 <= self.e

    def array(self, name: str, shape: tuple) -> np.ndarray | None:
        rows = tuple(reversed(shape))
        if name == "token_embd.weight":
            return self.embeddings(rows)
        if name == "output.weight":
            return self.head(rows)
        if name.endswith("norm.weight"):
            return self.norm(name, rows)
        if name.startswith("blk.0.attn_"):
            return self.layer0_attention(name, rows)
        if name.endswith(("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
                          "ffn_down_exps.weight")):
            return np.zeros(rows, np.float32)
        return None                                             # router, gate and up experts: random

    def embeddings(self, rows) -> np.ndarray:
        n_vocab, e = rows
        x = np.zeros(rows, np.float32)
        r = self.rng.standard_normal((n_vocab, e - self.free), dtype=np.float32)
        x[:, self.free:] = r / np.linalg.norm(r, axis=1, keepdims=True)
        for tok, dim in self.code.items():
            x[tok, self.free:] = 0.0
            x[tok, dim] = 1.0
        x[:, B] = 1.0
        return x

    def head(self, rows) -> np.ndarray:
        w = np.zeros(rows, np.float32)
        w[:, self.free:] = 0.05 * self.rng.standard_normal((rows[0], self.e - self.free), dtype=np.float32)
        for src, nxt in CHAIN.items():
            w[nxt, self.code[src]] += STEP
        for tok, bias in PREFER.items():
            w[tok, B] += bias
        nl2 = self.code[NL2]
        w[TOOL_CALL, nl2] += 8.0            # at "\n\n": <tool_call> 8 + 4 T - 14 S, "It" 10 + 4 S,
        w[TOOL_CALL, T] += 4.0              # against <|im_end|>'s 7: a call iff T and not S
        w[TOOL_CALL, S] -= 14.0
        w[IT, nl2] += 10.0
        w[IT, S] += 4.0
        return w

    def norm(self, name: str, rows) -> np.ndarray:
        w = np.ones(rows, np.float32)
        if name in ("blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight"):
            w[:] = 4.0                      # a matching query and key score 4 * 4 * 4 = 64
        return w

    def layer0_attention(self, name: str, rows) -> np.ndarray | None:
        d = SHAPE.d
        pair = d // 2 - 1                   # the slowest rotary pair (NEOX: dims i and i + d/2)
        x_hat = np.sqrt(self.e / 2.0)       # a coded token's dimension after the input RMS norm
        w = np.zeros(rows, np.float32)
        heads = {0: (TOOL_RESPONSE, S), 2: (TOOL_CALL, T)}      # query head: (key token, flag)
        group = SHAPE.n_head // SHAPE.n_head_kv
        for head, (tok, flag) in heads.items():
            kv = head // group
            if name.endswith("attn_q.weight"):
                w[head * d + pair, B] = 1.0
            elif name.endswith("attn_k.weight"):
                w[kv * d + pair, self.code[tok]] = 1.0
            elif name.endswith("attn_v.weight"):
                w[kv * d, self.code[tok]] = 1.0 / x_hat
            elif name.endswith("attn_output.weight"):
                w[flag, head * d] = 1.0
        return w
