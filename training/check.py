"""Checks of a written stdlib model, printed as markdown (training/LOG.md
carries their output): `python -m training.check [MODEL]`. Needs no
PyTorch (the tests import it); the tokenizer check needs `tokenizers`.

- perplexity on the held-out files (never trained on) by llama.cpp's own
  `llama-perplexity` and by `shimmy-py perplexity`, and by a random-weight
  twin of the same shapes and vocabulary (what learning nothing scores);
- the tokenizer: Hugging Face `tokenizers` rebuilt from the GGUF's own
  vocabulary and merges (byte-level BPE, GPT-2's split) against llama.cpp's
  tokenization of each held-out file, token for token.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from shimmy_py import Model
from shimmy_py.generation.perplexity import of_file
from shimmy_py.gguf_io.reader import read_header
from shimmy_py.native import install as native
from training import corpus


def llama_perplexity(model: Path, text: Path, ctx: int = 512, threads: int = 2, tries: int = 5) -> float:
    """llama-perplexity's figure: "Final estimate: PPL = X" (stderr), or the
    running value after its last chunk ("[N]X," on stdout), the same number.
    Its log thread can lose the last lines of both when the process exits
    first, so a run that printed neither is run again."""
    for _ in range(tries):
        run = subprocess.run([str(native.tool("llama-perplexity")), "-m", str(model), "-f", str(text), "-c", str(ctx),
                              "-t", str(threads)], capture_output=True, text=True, check=True)
        out = run.stderr + run.stdout
        final, chunks = re.search(r"Final estimate: PPL = ([0-9.]+)", out), re.search(r"over (\d+) chunks", out)
        last = final or (re.search(rf"\[{chunks[1]}\]([0-9.]+),", out) if chunks else None)
        if last:
            return float(last[1])
    raise RuntimeError(f"llama-perplexity printed no final figure in {tries} runs: {run.stderr[-1000:]}")


def hf_tokenizer(model: Path):
    """The GGUF's vocabulary and merges as a Hugging Face byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    meta = read_header(model).metadata
    full = lambda key: meta[key] if isinstance(meta[key], list) else meta[key].load()   # noqa: E731 (large: a ref)
    vocab = {t: i for i, t in enumerate(full("tokenizer.ggml.tokens"))}
    merges = [tuple(m.split(" ", 1)) for m in full("tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def main(argv=None) -> int:
    model = Path(argv[0] if argv else sys.argv[1] if len(sys.argv) > 1 else corpus.MODEL)
    sys.path.insert(0, str(corpus.HERE.parent / "benchmarks"))
    from routing_trained import random_twin
    with tempfile.TemporaryDirectory() as d:
        text = Path(d) / "heldout.py"
        text.write_text(corpus.heldout_text(), encoding="utf-8")
        twin = random_twin(model, Path(d) / "random.gguf")
        figures = {"llama-perplexity": llama_perplexity(model, text),
                   "shimmy-py perplexity": of_file(model, text.read_text(encoding="utf-8"), n_threads=2).ppl,
                   "llama-perplexity, random twin": llama_perplexity(twin, text)}
    print(f"Perplexity at -c 512 on the held-out files ({', '.join(corpus.HELDOUT)}):\n")
    print("| | PPL |\n|---|---:|")
    for name, ppl in figures.items():
        print(f"| {name} | {ppl:.4f} |")
    hf = hf_tokenizer(model)
    with Model(model, vocab_only=True) as m:
        rows = []
        for name in corpus.HELDOUT:
            src = corpus.read(corpus.HELDOUT_DIR / name)
            ours, theirs = m.tokenize(src, add_special=False), hf.encode(src).ids
            same = sum(a == b for a, b in zip(ours, theirs))
            rows.append((name, len(ours), len(theirs), same == len(ours) == len(theirs)))
    print("\nTokenization, llama.cpp against Hugging Face tokenizers from the same vocabulary and merges:\n")
    print("| file | llama.cpp tokens | tokenizers tokens | identical |\n|---|---:|---:|---|")
    for name, a, b, same in rows:
        print(f"| {name} | {a} | {b} | {'yes' if same else 'no'} |")
    print("\n" + json.dumps({k: round(v, 4) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
