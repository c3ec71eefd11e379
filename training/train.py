"""Trains the stdlib model and writes it as a GGUF: `python -m training.train`
(or `make train`), about 45 minutes on a 2-core machine.

The recipe, all fixed here: the corpus rule of corpus.py, a 4096-token BPE
(bpe.py), model.Config, seed 0, AdamW (betas 0.9/0.95, weight decay 0.1 on
matrices), the learning rate warmed up over 100 steps then cosine-decayed
to a tenth, STEPS steps of BATCH windows of n_ctx tokens drawn at random
from the training tokens, balance loss weight ALPHA, float32 throughout
(bfloat16 autocast was slower on the 2-core machine: 2.6 s a step against
1.9). Writes training/stdlib-moe.gguf (F16) and training/LOG.md (the
recipe, the loss curve, held-out perplexity).
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training import bpe, corpus
from training.model import Config, StdlibMoE

SEED, STEPS, BATCH, LR, ALPHA, WARMUP = 0, 1500, 16, 3e-3, 0.01, 100
OUT = corpus.MODEL
# A code model's chat: the user's text is where the code starts, the answer continues it (a system
# prompt becomes a comment above it); BOS is the tokenizer's own (add_bos_token), not the template's.
CHAT_TEMPLATE = ("{%- for message in messages -%}"
                 "{%- if message['role'] == 'system' -%}{{ '# ' + message['content'] + '\n' }}"
                 "{%- elif message['role'] == 'user' -%}{{ message['content'] }}"
                 "{%- elif message['role'] == 'assistant' -%}{{ message['content'] + '\n' }}"
                 "{%- endif -%}{%- endfor -%}")
LOG = corpus.HERE / "LOG.md"


def tokens_of(tok, paths) -> np.ndarray:
    """Every training file's tokens, each file after an <|endoftext|> (the BOS llama.cpp adds)."""
    bos = tok.token_to_id(bpe.ENDOFTEXT)
    parts = []
    for p in paths:
        parts += [bos] + bpe.encode(tok, corpus.read(p))
    return np.asarray(parts, dtype=np.int32)


def heldout_nll(model, ids: np.ndarray, n_ctx: int) -> float:
    """Mean negative log-likelihood on the held-out tokens: windows of n_ctx
    that begin with BOS, scored on their second half, as llama-perplexity scores."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - n_ctx + 1, n_ctx):
            x = torch.from_numpy(ids[start:start + n_ctx].astype(np.int64))[None]
            x[0, 0] = int(ids[0])
            logits, _ = model(x[:, :-1])
            nll = F.cross_entropy(logits[0].float(), x[0, 1:], reduction="none")
            half = n_ctx // 2 - 1
            total, count = total + nll[half:].sum().item(), count + nll[half:].numel()
    model.train()
    return total / count


def lr_at(step: int) -> float:
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    t = (step - WARMUP) / max(1, STEPS - WARMUP)
    return LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def optimizer(model):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                             lr=LR, betas=(0.9, 0.95))


def train(steps: int = STEPS, out: Path = OUT, log: Path = LOG) -> None:
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    files = corpus.training_files()
    started = time.time()
    tok = bpe.train(files)
    ids = tokens_of(tok, files)
    held = np.asarray([tok.token_to_id(bpe.ENDOFTEXT)] + bpe.encode(tok, corpus.heldout_text()), dtype=np.int32)
    c = Config(n_vocab=tok.get_vocab_size())
    model = StdlibMoE(c)
    opt = optimizer(model)
    curve = []
    print(f"{len(files)} files, {len(ids)} training tokens, {len(held)} held-out; "
          f"{sum(p.numel() for p in model.parameters())} parameters", flush=True)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        at = rng.integers(0, len(ids) - c.n_ctx - 1, size=BATCH)
        batch = torch.from_numpy(np.stack([ids[a:a + c.n_ctx + 1] for a in at]).astype(np.int64))
        logits, balance = model(batch[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, c.n_vocab), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        (loss + ALPHA * c.n_expert * balance).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            row = (step, loss.item(), balance.item(), None, time.time() - started)
            if step % 250 == 0 or step == steps - 1:
                row = row[:3] + (math.exp(heldout_nll(model, held, c.n_ctx)),) + row[4:]
            curve.append(row)
            print("step %d loss %.3f balance %.3f held-out ppl %s  %.0f s" % (
                row[0], row[1], row[2], "-" if row[3] is None else f"{row[3]:.2f}", row[4]), flush=True)
    export(model, tok, out)
    write_log(log, c, files, ids, held, curve, steps, time.time() - started)


def export(model, tok, out: Path) -> Path:
    """The trained weights through shimmy_py's own GGUF writer, as the `deepseek` architecture, F16."""
    from gguf import GGMLQuantizationType

    from shimmy_py.synthetic import families
    from shimmy_py.synthetic.layouts import Shape
    c = model.c
    shape = Shape(n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head, n_head_kv=c.n_head, n_ff=c.n_ff,
                  n_ff_exp=c.n_ff_exp, n_ff_shexp=c.n_ff_exp * c.n_shared, n_expert=c.n_expert,
                  n_expert_used=c.n_expert_used, n_dense=c.n_dense, n_vocab=c.n_vocab, n_ctx_train=c.n_ctx)
    arrays = model.arrays()
    with tempfile.TemporaryDirectory() as d:
        vocab = bpe.write_gguf(tok, Path(d) / "vocab.gguf")
        return families.write(out, "deepseek", shape=shape, dtype=GGMLQuantizationType.F16, vocab=vocab,
                              name="stdlib-moe", arrays=lambda name, _: arrays[name], made="trained on the "
                              "Python standard library, training/LOG.md", template=CHAT_TEMPLATE)


def set_template(path: Path, template: str = CHAT_TEMPLATE) -> Path:
    """Rewrites a written model with `template` as its chat template, every
    other key and tensor byte for byte (the file of 2026-12-07 was trained
    before its template was chosen: `python -m training.train --template-only`)."""
    from gguf import GGUFValueType

    from shimmy_py.gguf_io.format import TOKENIZER
    from shimmy_py.gguf_io.reader import read_header
    from shimmy_py.gguf_io.writer import GGUFBuilder
    h = read_header(path)
    b = GGUFBuilder(h.alignment)
    for key in h.metadata:
        if key != TOKENIZER.CHAT_TEMPLATE:
            b.add_raw(key, h.raw_kv(key))
    b.add(TOKENIZER.CHAT_TEMPLATE, template, GGUFValueType.STRING)
    data = Path(path).read_bytes()
    for t in h.tensors:
        b.add_tensor(t.name, t.shape, t.ggml_type, lambda t=t: data[t.offset:t.offset + t.nbytes])
    b.write(path)
    return path


def write_log(log: Path, c: Config, files, ids, held, curve, steps: int, seconds: float) -> None:
    lines = ["# stdlib-moe: training log", "",
             "Written by `python -m training.train` (training/train.py); the recipe is that file's constants.", "",
             f"- Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
             f"- corpus: {len(files)} files of the standard library (training/corpus.py), sha256 "
             f"{corpus.digest(files)}", f"- {len(ids)} training tokens; held-out: {', '.join(corpus.HELDOUT)} "
             f"({len(held)} tokens)",
             f"- config: {c.as_dict()}",
             f"- seed {SEED}, {steps} steps x {BATCH} windows of {c.n_ctx} tokens "
             f"({steps * BATCH * c.n_ctx} tokens seen), lr {LR}, balance alpha {ALPHA}",
             f"- wall time {seconds / 60:.1f} min", "",
             "| step | train loss | balance | held-out ppl | seconds |", "|---:|---:|---:|---:|---:|"]
    for step, loss, bal, ppl, t in curve:
        lines.append(f"| {step} | {loss:.3f} | {bal:.3f} | {'' if ppl is None else f'{ppl:.2f}'} | {t:.0f} |")
    log.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=STEPS, help="fewer steps for a quick trial (the recipe: %(default)s)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--log", type=Path, default=LOG)
    p.add_argument("--template-only", action="store_true", help="only set the chat template of --out")
    a = p.parse_args(argv)
    if a.template_only:
        set_template(a.out)
        return 0
    train(a.steps, a.out, a.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
