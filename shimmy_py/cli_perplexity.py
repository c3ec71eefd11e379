"""`shimmy-py perplexity`: a text file's perplexity under a model, computed
as llama.cpp's `llama-perplexity -f FILE -c N` computes it
(generation/perplexity.py), with the same running figures and final line,
so that the two can be set side by side."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import ShimmyError
from .fields import add_flags, from_flags, int_at_least


def _perplexity(args) -> int:
    from .generation.options import ModelOptions
    from .generation.perplexity import of_file
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ShimmyError(f"cannot read {args.file}: {e}") from None
    threads = from_flags(ModelOptions, args).n_threads
    r = of_file(args.model, text, args.ctx_size, n_batch=args.batch_size, n_threads=threads)
    if args.json:
        print(json.dumps({"ppl": r.ppl, "nll": r.nll, "tokens_scored": r.count, "chunks": r.chunks,
                          "n_ctx": args.ctx_size}))
    else:
        print("".join(f"[{i + 1}]{v:.4f}," for i, v in enumerate(r.running)))
        print(f"Final estimate: PPL = {r.ppl:.4f} ({r.count} tokens scored in {r.chunks} chunks of {args.ctx_size})")
    return 0


def add_perplexity(sub) -> None:
    from .generation.options import ModelOptions
    p = sub.add_parser("perplexity", help="a text file's perplexity, as llama-perplexity computes it")
    p.add_argument("model", help="path of a GGUF file")
    p.add_argument("-f", "--file", required=True, help="the text to score")
    p.add_argument("-c", "--ctx-size", type=int_at_least(2), default=512,
                   help="tokens per chunk; the second half of each is scored (default %(default)s)")
    p.add_argument("-b", "--batch-size", type=int_at_least(2), default=2048,
                   help="tokens per decode: batch / ctx chunks go together (default %(default)s)")
    add_flags(p, ModelOptions, only={"n_threads"})
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_perplexity)
