"""`shimmy-py quantize`: a smaller file for the memory a machine has, made
by the built `llama-quantize` with a type for every tensor chosen here
(placement/retype.py: the routed experts, or every host weight, at one type;
what the plan puts on an accelerator kept as it is), the written file
checked against those types, and what the change costs measured on a fixed
text: how many greedy tokens both files agree on, and both perplexities.
"""
from __future__ import annotations

import inspect
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ShimmyError
from .gguf_io.tensors import read_table
from .placement.retype import Retyping, requantized, retyped, target_types
from .sizes import gib

GREEDY_TOKENS = 32
PROMPT_CHARS = 200
TEXT_CHARS = 4000          # of the default text: about a thousand tokens, eight chunks at context 128
COMPARE_CTX = 128


@dataclass(frozen=True)
class Quantized:
    path: Path
    types: dict                   # tensor name -> type in the written file
    retyped: int                  # tensors whose type changed
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True)
class Comparison:
    text: str                     # what was measured on
    greedy_tokens: int
    same_prefix: int              # greedy tokens equal before the first difference
    same_positions: int           # positions where the two agree
    ppl_before: float
    ppl_after: float
    tokens_scored: int

    def lines(self) -> list[str]:
        change = (self.ppl_after / self.ppl_before - 1) * 100
        return [f"greedy, {self.greedy_tokens} tokens after the text's first {PROMPT_CHARS} characters: the same "
                f"for the first {self.same_prefix}, equal at {self.same_positions} of {self.greedy_tokens} positions",
                f"perplexity of {self.text} ({self.tokens_scored} tokens scored, context {COMPARE_CTX}): "
                f"{self.ppl_before:.4f} before, {self.ppl_after:.4f} after ({change:+.2f}%)"]


def default_text() -> tuple[str, str]:
    """(name, text): the start of the Python standard library's heapq.py, prose and code, on every machine."""
    import heapq
    return f"the first {TEXT_CHARS} characters of Python's heapq.py", inspect.getsource(heapq)[:TEXT_CHARS]


def plan_types(table, retyping: Retyping, on_accelerator=frozenset()) -> dict[str, str]:
    """Every tensor's type in the file to write (`table`: the source's); an error names what cannot be done."""
    src = table.path
    types = target_types(table, retyping, on_accelerator)
    again = requantized(table, types)
    if again:
        t = next(x for x in table.tensors if x.name == again[0])
        raise ShimmyError(f"{src}: {again[0]} is {t.ggml_type} already ({len(again)} tensors like it); quantizing "
                          "it again loses more than quantizing once: start from the F16, BF16 or F32 file")
    if types == {t.name: t.ggml_type for t in table.tensors}:
        raise ShimmyError(f"{src}: nothing to quantize: the {retyping.label()} are that type already, or the plan "
                          "keeps them on an accelerator (what an accelerator holds stays as it is)")
    return types


def quantize_file(src, out, retyping: Retyping, on_accelerator=frozenset(), threads: int | None = None) -> Quantized:
    """Writes `out` with `src`'s tensors at plan_types(); the file is checked tensor by tensor."""
    from .native.install import tool
    src, out = Path(src), Path(out)
    if out.exists():
        raise ShimmyError(f"{out} exists: remove it or choose another name (quantize never overwrites a file)")
    table = read_table(src)
    types = plan_types(table, retyping, on_accelerator)
    size = retyped(table, types).nbytes
    free = shutil.disk_usage(out.parent if str(out.parent) else ".").free
    if free < size:
        raise ShimmyError(f"{out.parent}: {gib(free)} free, the file needs {gib(size)}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as spec:
        spec.write("".join(f"^{_escape(name)}$={kind.lower()}\n" for name, kind in types.items()))
        spec.flush()
        cmd = [str(tool("llama-quantize")), "--tensor-type-file", spec.name, str(src), str(out), retyping.ftype,
               *([str(threads)] if threads else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        raise ShimmyError(f"llama-quantize failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
    result = read_table(out)
    written = {t.name: t.ggml_type for t in result.tensors}
    wrong = [n for n, kind in types.items() if written.get(n) != kind]
    if wrong:
        out.unlink(missing_ok=True)
        raise ShimmyError(f"llama-quantize wrote {wrong[0]} as {written.get(wrong[0])}, not {types[wrong[0]]} "
                          f"({len(wrong)} tensors differ); the file was removed")
    changed = sum(1 for t in table.tensors if types[t.name] != t.ggml_type)
    return Quantized(out, written, changed, table.nbytes, result.nbytes)


def _escape(name: str) -> str:
    return "".join("\\" + c if c in ".^$|?*+()[]{}\\" else c for c in name)


def compare(src, out, options, text: tuple[str, str], threads: int | None = None) -> Comparison:
    """Greedy agreement and perplexity of the two files on `text` (name, text),
    each loaded with `options`' placement (PlacementOptions)."""
    name, body = text
    a, b = (_measure(path, options, body, threads) for path in (src, out))
    same = sum(1 for x, y in zip(a[0], b[0]) if x == y)
    prefix = next((i for i, (x, y) in enumerate(zip(a[0], b[0])) if x != y), min(len(a[0]), len(b[0])))
    return Comparison(name, max(len(a[0]), len(b[0])), prefix, same, a[1].ppl, b[1].ppl, a[1].count)


def _measure(path, placement, text: str, threads: int | None):
    from .generation.model import Model
    from .generation.perplexity import options_for, perplexity
    with Model(path, options_for(COMPARE_CTX, n_batch=512, placement=placement, n_threads=threads)) as m:
        ppl = perplexity(m, text, COMPARE_CTX)
        m.reset()
        tokens = m.generate(text[:PROMPT_CHARS], max_tokens=GREEDY_TOKENS, temperature=0).tokens
    return tokens, ppl
