"""Which runs of text llama.cpp's pre-tokenizer recurses on, per tokenizer the
pinned source ships and character class: each run of N characters is
tokenized by llama_tokenize on a thread with an ordinary 8 MiB stack, in a
child process; a crash (SIGSEGV: the stack overflowed) or the seconds it took.
shimmy_py itself never tokenizes text over 8,000 characters on such a stack
(native/model_handle.py); this shows why.

    python benchmarks/tokenizer_runs.py [--chars 100000] [--markdown]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from shimmy_py.native import install

CLASSES = {"spaces": " ", "tabs": "\t", "newlines": "\n", "letters": "a", "digits": "7", "punctuation": "!",
           "CJK": "中", "emoji": "😀", "combining marks": "e\u0301", "alternating 'a '": "a "}
CHILD = """
import sys, threading
from shimmy_py import Model
m = Model(sys.argv[1], vocab_only=True)
text = sys.argv[2] * (int(sys.argv[3]) // len(sys.argv[2]))
threading.stack_size(8 << 20)
t = threading.Thread(target=lambda: m.handle.tokenize_here(text.encode(), True, False))
t.start(); t.join()
"""


def run(vocab, unit: str, chars: int) -> str:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(vocab), unit, str(chars)], capture_output=True,
                          timeout=600)
    took = time.perf_counter() - t0
    if proc.returncode < 0:
        return "crash"
    return f"{took:.1f} s" if proc.returncode == 0 else f"exit {proc.returncode}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chars", type=int, default=100_000)
    a = ap.parse_args()
    vocabs = sorted((install.find_install() / "share").glob("ggml-vocab-*.gguf"))
    names = [v.stem.removeprefix("ggml-vocab-") for v in vocabs]
    print(f"{a.chars:,}-character runs on an 8 MiB stack (crash: the pre-tokenizer overflowed it)\n")
    print("| run of | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, unit in CLASSES.items():
        print(f"| {label} | " + " | ".join(run(v, unit, a.chars) for v in vocabs) + " |", flush=True)


if __name__ == "__main__":
    main()
