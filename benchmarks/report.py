"""Turns one side-by-side run into docs/BENCHMARKS.md: figures, ratios, targets.

Ratios are paired: each round runs llama.cpp's tool and shimmy_py back to back,
the ratio is taken within the round, and the table shows the median over the
rounds with its range, because this machine's speed drifts between rounds by
more than the differences being measured.
"""
from __future__ import annotations

import datetime
import statistics
import subprocess
from pathlib import Path


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def paired(ours: list[dict], theirs: list[dict], key: str, diff: bool = False) -> tuple[float, float, float]:
    """Median, min and max over rounds of ours/theirs (or ours - theirs)."""
    values = [o[key] - t[key] if diff else (o[key] / t[key] if t[key] else float("nan"))
              for o, t in zip(ours, theirs)]
    return statistics.median(values), min(values), max(values)


def _fmt(v: tuple, unit: str = "", digits: int = 3) -> str:
    med, lo, hi = v
    if unit:
        return f"{med:+.1f}{unit} ({lo:+.1f} to {hi:+.1f})"
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def targets(theirs, ours, http, ttft, plan_s) -> list[tuple[str, str, bool | None]]:
    one = (http[("shimmy-py serve", 1)], http[("llama-server", 1)])
    four = (http[("shimmy-py serve", 4)], http[("llama-server", 4)])
    unbatched = http[("shimmy-py serve --parallel 1", 4)]
    rows = [("prefill tok/s vs stock llama-bench >= 0.98", paired(ours, theirs, "prefill_tps"), 0.98),
            ("decode tok/s vs stock llama-bench >= 0.98", paired(ours, theirs, "decode_tps"), 0.98),
            ("HTTP single-stream tok/s vs stock llama-server >= 0.97", paired(*one, "request_tps"), 0.97),
            ("4 clients aggregate vs stock llama-server -np 4 >= 1.0", paired(*four, "aggregate_tps"), 1.0)]
    out = [(name, _fmt(v), v[0] >= goal) for name, v, goal in rows]
    # What batching gains over one slot is the hardware's as much as the server's (4 MoE tokens
    # read up to 4 times the experts one does): shown for both servers, compared by the row above.
    ours_gain = paired(four[0], unbatched, "aggregate_tps")
    theirs_gain = paired(four[1], http[("llama-server -np 1", 4)], "aggregate_tps")
    out.append(("(for reference, not a target) shimmy-py --parallel 4 vs its --parallel 1", _fmt(ours_gain), None))
    out.append(("(for reference, not a target) llama-server -np 4 vs its -np 1", _fmt(theirs_gain), None))
    theirs_ms, ours_ms = ttft["llama-server"], ttft["shimmy-py serve"]
    diffs = [o - t for o, t in zip(ours_ms, theirs_ms)]
    gap = (statistics.median(diffs), min(diffs), max(diffs))
    out.insert(2, (f"HTTP TTFT <= llama-server + 5 ms (paired over {len(diffs)} requests)", _fmt(gap, " ms"),
                   gap[0] <= 5))
    out.append(("planning the deepseek-moe-16b table < 0.5 s", f"{plan_s:.3f} s", plan_s < 0.5))
    return out


def _median(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


HISTORY = "## History"


def _history(out: Path) -> str:
    """The file's hand-written history section (changes, and before/after
    figures with the command that measured them), carried over unchanged."""
    try:
        text = out.read_text()
    except OSError:
        return ""
    start = text.find("\n" + HISTORY + "\n")
    return text[start:] if start >= 0 else ""


def write_report(out: Path, machine: str, builds: list[str], args: dict, theirs, ours, invariant, http, ttft,
                 plan_s, took_s, trace: dict | None = None, spec: tuple | None = None) -> str:
    lines = [
        "# Benchmarks", "",
        "Written by `make bench` (`benchmarks/side_by_side.py`); rerun it to replace this file. "
        "Model: the `bench` synthetic preset (DeepSeekMoE layout: 64 routed experts, 6 active, 2 shared; "
        "random weights, F16), all layers on the CPU (this machine has no accelerator). Each round runs "
        "llama.cpp's tool and shimmy_py back to back, which goes first alternating (the servers compared "
        "are up at once and take turns); a ratio is taken within a round, and the median over rounds is "
        "shown with its range, since this machine's speed drifts between rounds by more than the "
        "differences measured.", "",
        f"- machine: {machine}", *builds,
        f"- run: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {_commit()}, "
        f"{took_s / 60:.1f} min; threads {args['threads']}, prompt {args['p']}, generated {args['n']}, "
        f"{len(ours)} rounds{' (quick run)' if args['quick'] else ''}", "",
        "## Targets (median ratio over rounds, range in brackets)", "", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {'' if ok is None else 'met' if ok else '**missed**'} |"
              for name, value, ok in targets(theirs, ours, http, ttft, plan_s)]
    if trace:
        lines.append(f"| expert tracing: decode tok/s traced vs plain >= 0.90 | {_fmt(trace['decode'])} | "
                     f"{'met' if trace['decode'][0] >= 0.9 else '**missed**'} |")
    if spec:
        for case, row in spec[0].items():
            if not case.startswith("none"):
                ratio = row["ratio"]
                lines.append(f"| speculative {case}: tok/s >= 0.98 of llama-server's at equal settings | "
                             f"{_fmt(ratio)} | {'met' if ratio[0] >= 0.98 else '**missed**'} |")
    lines += ["", "## Stock llama-bench against shimmy_py (medians over rounds)", "",
              "| | stock llama-bench | shimmy_py | ratio (paired) |", "|---|---|---|---|"]
    for key, label in (("prefill_tps", f"prompt {args['p']} tok/s"), ("decode_tps", f"decode {args['n']} tok/s")):
        lines.append(f"| {label} | {_median(theirs, key):.2f} | {_median(ours, key):.2f} | "
                     f"{_fmt(paired(ours, theirs, key))} |")
    if invariant:
        lines += ["", "What `--batch-invariant` costs (llamafile's kernels off, so that a sequence's logits do "
                  "not depend on what shares its batch): its llama-bench against the stock one, same rounds.", "",
                  "| | stock llama-bench | --batch-invariant llama-bench | ratio (paired) |", "|---|---|---|---|"]
        for key, label in (("prefill_tps", f"prompt {args['p']} tok/s"),
                           ("decode_tps", f"decode {args['n']} tok/s")):
            lines.append(f"| {label} | {_median(theirs, key):.2f} | {_median(invariant, key):.2f} | "
                         f"{_fmt(paired(invariant, theirs, key))} |")
    lines += ["", "## llama-server against shimmy-py serve (same client, /v1/completions, streamed; medians)", "",
              "Same model, threads and context per slot; for more than one slot llama-server runs with "
              "`--kv-unified`, one KV cache shared by the slots, as shimmy-py serve does.", "",
              "| server | clients | rounds | requests per round | TTFT ms | tok/s per request | aggregate tok/s |",
              "|---|---|---|---|---|---|---|"]
    for (name, clients), ms in sorted(http.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {name} | {clients} | {len(ms)} | {ms[0]['requests']} | {_median(ms, 'ttft_ms'):.1f} | "
                     f"{_median(ms, 'request_tps'):.2f} | {_median(ms, 'aggregate_tps'):.2f} |")
    lines += ["", f"Time to first token with both servers up at once (-np 1 / --parallel 1), "
              f"{len(ttft['llama-server'])} requests each, the order alternating: median "
              + ", ".join(f"{name} {statistics.median(v):.1f} ms" for name, v in ttft.items())
              + " (32-word prompts, 2 tokens generated)."]
    shares = [m["outside_decode"] for ms in http.values() for m in ms if m.get("outside_decode") is not None]
    if shares:
        lines += ["", f"Profile: shimmy-py's engine spent {100 * statistics.median(shares):.1f}% of its step time "
                  f"outside llama_decode (median over {len(shares)} HTTP runs, range "
                  f"{100 * min(shares):.1f}-{100 * max(shares):.1f}%): batch building, sampling "
                  "(an in-place argmax for greedy requests) and the Python loop; "
                  "the ranges above show the run-to-run spread."]
    if trace:
        lines += ["", f"Expert tracing (`benchmarks/trace_cost.py`: the same greedy generation plain and with "
                  f"`trace_experts=True`, alternating, {trace['rounds']} rounds): decode "
                  f"{trace['plain_decode_tps']:.2f} tok/s plain, {trace['traced_decode_tps']:.2f} traced; a traced "
                  f"prefill runs at {_fmt(trace['prefill'])} of a plain one, since it asks for every prompt "
                  "token's logits (llama.cpp's last layer routes only the tokens whose logits are wanted)."]
    if spec:
        lines += ["", "## Speculative decoding beside llama-server's (`benchmarks/spec_side_by_side.py`)", "",
                  *spec[1], "", "What it says, and the real-size figures: [SPECULATIVE.md](SPECULATIVE.md)."]
    lines += ["", f"Planning the DeepSeekMoE 16B table (shape-only file, `fit` to 8 GiB): {plan_s * 1000:.0f} ms "
              "(median of 5).", ""]
    text = "\n".join(lines) + _history(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
