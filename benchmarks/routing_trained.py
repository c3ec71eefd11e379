"""How the trained stdlib model routes Python it never saw, beside a
random-weight model of the same shape and vocabulary (docs/EXPERTS.md).

    python benchmarks/routing_trained.py [--out docs/experts] [--tokens 500]

Both models read the same text, the held-out files (training/heldout/, cut
into prompts of --tokens tokens, within the 512 it was trained on), traced
(every prompt token's routing in every MoE layer). Printed as markdown: per layer the load balance
(max/mean, normalised entropy), adjacent-token overlap, LRU hit rates; then
which experts each kind of token goes to (Python's own tokenizer names each
character: indentation, keyword, identifier, string, comment, number,
operator, newline) as the lift of its favourite expert (its share of that
kind's routings over its share of all) and the mutual information between
kind and expert; and how well the next MoE layer's router, given this
layer's router input, names the experts the next layer will choose
(pre-gating: the hit rate of reading them a layer ahead; chance is k/n).
Heatmaps of both are written into --out.
"""
from __future__ import annotations

import argparse
import io
import keyword
import sys
import tokenize
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shimmy_py import Model  # noqa: E402
from shimmy_py.gguf_io.reader import read_header  # noqa: E402
from training import corpus  # noqa: E402

TRAINED = corpus.MODEL
KINDS = ("indentation", "newline", "keyword", "identifier", "string", "comment", "number", "operator")


def shape_of(path: Path):
    """The synthetic writer's Shape of a `deepseek` model, from its header (its own vocabulary)."""
    from shimmy_py.synthetic.layouts import Shape
    a = read_header(path).arch_key
    return Shape(n_embd=a("embedding_length"), n_layer=a("block_count"), n_head=a("attention.head_count"),
                 n_head_kv=a("attention.head_count_kv"), n_ff=a("feed_forward_length"),
                 n_ff_exp=a("expert_feed_forward_length"),
                 n_ff_shexp=a("expert_feed_forward_length") * a("expert_shared_count"), n_expert=a("expert_count"),
                 n_expert_used=a("expert_used_count"), n_dense=a("leading_dense_block_count"), n_vocab=0,
                 n_ctx_train=a("context_length"))


def random_twin(trained: Path, out: Path) -> Path:
    """A random-weight model of the trained one's shapes and tokenizer (seed 0, F16)."""
    from gguf import GGMLQuantizationType

    from shimmy_py.synthetic import families
    if out.exists():
        return out
    return families.write(out, "deepseek", shape=shape_of(trained), dtype=GGMLQuantizationType.F16, vocab=trained,
                          name="stdlib-random", template=read_header(trained).metadata.get("tokenizer.chat_template"))


def char_kinds(text: str) -> list[str | None]:
    """The kind of each character of `text`, by Python's tokenizer."""
    kinds: list[str | None] = [None] * len(text)
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    at = lambda row, col: starts[row - 1] + col          # noqa: E731
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            a, b = at(*tok.start), at(*tok.end)
            if tok.type == tokenize.NAME:
                kind = "keyword" if keyword.iskeyword(tok.string) else "identifier"
            else:
                kind = {tokenize.STRING: "string", tokenize.COMMENT: "comment", tokenize.NUMBER: "number",
                        tokenize.OP: "operator", tokenize.NEWLINE: "newline", tokenize.NL: "newline"}.get(tok.type)
            for i in range(a, min(b, len(text))):
                kinds[i] = kind
    except (tokenize.TokenError, IndentationError):
        pass                                             # a cut-off file: what was tokenized stands
    for i, line_start in enumerate(starts[:-1]):          # leading whitespace of each line
        j = line_start
        while j < starts[i + 1] and text[j] in " \t":
            kinds[j] = "indentation"
            j += 1
    return kinds


def token_kinds(pieces: list[str], text: str) -> list[str | None]:
    """Each token's kind: that of its first character that is not a space
    (a token of spaces alone: indentation; one holding a newline: newline)."""
    kinds, out, pos = char_kinds(text), [], 0
    for p in pieces:
        span = range(pos, min(pos + len(p), len(text)))
        pos += len(p)
        chars = [kinds[i] for i in span if text[i] not in " \t"] or [kinds[i] for i in span]
        out.append("newline" if "\n" in p and not p.strip() else (chars[0] if chars else None))
    return out


def trace(path: Path, texts: list[str], n_tokens: int):
    """Each text cut into prompts of n_tokens (the trained context is 512),
    each traced with its routers' inputs; the merged trace, each token's
    kind, and the router inputs (tokens, MoE layers, n_embd)."""
    from shimmy_py import ExpertTrace
    from shimmy_py.generation.experts import ExpertRecorder
    traces, kinds, inputs = [], [], []
    with Model(path, n_ctx=n_tokens + 16, trace_experts=True) as m:
        for text in texts:
            ids = m.tokenize(text, add_special=False)
            for start in range(0, len(ids) - n_tokens // 2, n_tokens - 1):
                recorder = ExpertRecorder(router_inputs=True)
                r = m.generate(m.detokenize(ids[start:start + n_tokens - 1]), max_tokens=1, temperature=0,
                               trace_experts=recorder)
                t = r.experts
                traces.append(t)
                inputs.append(np.concatenate(recorder.inputs)[:len(t.ids)])
                kinds += token_kinds(t.pieces[:t.n_prompt], "".join(t.pieces[:t.n_prompt]))[:len(t.ids)]
    return ExpertTrace.merge(traces), kinds, np.concatenate(inputs)


def pregating(path: Path, t, inputs: np.ndarray) -> np.ndarray:
    """Per MoE layer but the last: the share of the next layer's chosen
    experts that the next layer's router picks from this layer's router input
    (pre-gating: its reads could start a layer ahead). Chance is k/n_experts."""
    from shimmy_py.gguf_io.reader import tensor_array
    h = read_header(path)
    by_name = {x.name: x for x in h.tensors}
    out = np.zeros(len(t.layers) - 1)
    for li in range(len(t.layers) - 1):
        w = tensor_array(h, by_name[f"blk.{t.layers[li + 1]}.ffn_gate_inp.weight"]).astype(np.float32)
        guess = np.argsort(-(inputs[:, li].astype(np.float32) @ w.T), axis=1, kind="stable")[:, :t.k]
        actual = t.ids[:, li + 1]
        out[li] = np.mean([len(set(g) & set(a)) / t.k for g, a in zip(guess.tolist(), actual.tolist())])
    return out


def specialization(t, kinds: list) -> tuple[dict, np.ndarray]:
    """Per kind, in each layer: (favourite expert, its lift); and the mutual
    information between kind and expert per layer, in bits."""
    rows = np.array([k is not None for k in kinds[:len(t.ids)]])
    ks = np.array([k if k is not None else "" for k in kinds[:len(t.ids)]])
    fav, mi = {}, np.zeros(len(t.layers))
    for li in range(len(t.layers)):
        chosen = t.ids[rows, li, :]                                          # (tokens, k)
        kind_of = np.repeat(ks[rows], t.k)
        experts = chosen.ravel()
        overall = np.bincount(experts, minlength=t.n_experts) / len(experts)
        joint = np.zeros((len(KINDS), t.n_experts))
        for ki, kind in enumerate(KINDS):
            sel = experts[kind_of == kind]
            if len(sel):
                share = np.bincount(sel, minlength=t.n_experts) / len(sel)
                e = int(np.argmax(share / np.maximum(overall, 1e-12)))
                fav.setdefault(kind, []).append((e, share[e] / max(overall[e], 1e-12), len(sel) // t.k))
                joint[ki] = np.bincount(sel, minlength=t.n_experts)
        p = joint / joint.sum()
        pk, pe = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            mi[li] = np.nansum(np.where(p > 0, p * np.log2(p / (pk * pe)), 0.0))
    return fav, mi


def report(name: str, path: Path, t, kinds: list, inputs: np.ndarray, out: Path) -> list[str]:
    bal, ov, pre = t.load_balance(), t.adjacent_overlap(), pregating(path, t, inputs)
    caps, curve = t.lru_curve()
    fav, mi = specialization(t, kinds)
    t.heatmap(out / f"{name}.heatmap.png")
    lines = [f"### {name}: {len(t.ids)} tokens, {len(t.layers)} MoE layers, {t.n_experts} experts, top-{t.k}", "",
             "| layer | max/mean | entropy | adjacent overlap | " +
             " | ".join(f"LRU@{c}" for c in caps) + " | MI(kind; expert) bits | next layer pre-gated |",
             "|---:|---:|---:|---:|" + "---:|" * len(caps) + "---:|---:|"]
    for li, layer in enumerate(t.layers):
        lines.append(f"| {layer} | {bal['max_over_mean'][li]:.2f} | {bal['entropy'][li]:.3f} | {ov[li]:.3f} | " +
                     " | ".join(f"{curve[ci, li]:.2f}" for ci in range(len(caps))) + f" | {mi[li]:.3f} | " +
                     (f"{pre[li]:.2f} |" if li < len(pre) else "- |"))
    lines += ["", "| token kind | tokens | favourite expert (lift) per layer |", "|---|---:|---|"]
    for kind in KINDS:
        if kind in fav:
            per = ", ".join(f"L{layer}: {e} ({lift:.1f}x)" for layer, (e, lift, _) in zip(t.layers, fav[kind]))
            lines.append(f"| {kind} | {fav[kind][0][2]} | {per} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "experts")
    ap.add_argument("--model", type=Path, default=TRAINED, help="the trained model (default %(default)s)")
    ap.add_argument("--tokens", type=int, default=500, help="tokens per prompt (default %(default)s)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    texts = [corpus.read(corpus.HELDOUT_DIR / name) for name in corpus.HELDOUT]
    twin = random_twin(a.model, ROOT / "models" / f"{a.model.stem}-random.gguf")
    lines = []
    for name, path in (("trained", a.model), ("random", twin)):
        t, kinds, inputs = trace(path, texts, a.tokens)
        lines += report(name, path, t, kinds, inputs, a.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
