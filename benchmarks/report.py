"""Turns one side-by-side run into docs/BENCHMARKS.md: figures, ratios, targets."""
from __future__ import annotations

import datetime
import subprocess
from pathlib import Path


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _check(ok: bool) -> str:
    return "met" if ok else "**missed**"


def targets(theirs, ours, http, plan_s) -> list[tuple[str, str, bool]]:
    one_l, one_o = http[("llama-server", 1)], http[("shimmy-py serve", 1)]
    four_l, four_o = http[("llama-server", 4)], http[("shimmy-py serve", 4)]
    four_1 = http[("shimmy-py serve --parallel 1", 4)]
    r = lambda a, b: a / b if b else float("nan")  # noqa: E731
    return [
        ("prefill tok/s vs llama-bench >= 0.98", f"{r(ours['prefill_tps'], theirs['prefill_tps']):.3f}",
         r(ours["prefill_tps"], theirs["prefill_tps"]) >= 0.98),
        ("decode tok/s vs llama-bench >= 0.98", f"{r(ours['decode_tps'], theirs['decode_tps']):.3f}",
         r(ours["decode_tps"], theirs["decode_tps"]) >= 0.98),
        ("HTTP TTFT <= llama-server + 5 ms", f"{one_o['ttft_ms'] - one_l['ttft_ms']:+.1f} ms",
         one_o["ttft_ms"] <= one_l["ttft_ms"] + 5),
        ("HTTP single-stream tok/s vs llama-server >= 0.97", f"{r(one_o['request_tps'], one_l['request_tps']):.3f}",
         r(one_o["request_tps"], one_l["request_tps"]) >= 0.97),
        ("4 clients aggregate vs llama-server -np 4 >= 1.0",
         f"{r(four_o['aggregate_tps'], four_l['aggregate_tps']):.3f}",
         r(four_o["aggregate_tps"], four_l["aggregate_tps"]) >= 1.0),
        ("4 clients aggregate vs shimmy-py --parallel 1 >= 1.6",
         f"{r(four_o['aggregate_tps'], four_1['aggregate_tps']):.3f}",
         r(four_o["aggregate_tps"], four_1["aggregate_tps"]) >= 1.6),
        ("planning the deepseek-moe-16b table < 0.5 s", f"{plan_s:.3f} s", plan_s < 0.5),
    ]


def write_report(out: Path, machine: str, args: dict, theirs, ours, http, plan_s, took_s) -> str:
    lines = [
        "# Benchmarks", "",
        "Written by `make bench` (`benchmarks/side_by_side.py`); rerun it to replace this file. "
        "Model: the `bench` synthetic preset (DeepSeekMoE layout: 64 routed experts, 6 active, 2 shared; "
        "random weights, F16), all layers on the CPU (this machine has no accelerator).", "",
        f"- machine: {machine}",
        f"- run: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {_commit()}, "
        f"{took_s / 60:.1f} min; threads {args['threads']}, prompt {args['p']}, generated {args['n']}, "
        f"repetitions {args['r']}{' (quick run)' if args['quick'] else ', 3 alternating rounds, medians'}",
        "",
        "## Targets", "", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {_check(ok)} |" for name, value, ok in targets(theirs, ours, http, plan_s)]
    lines += ["", "## llama-bench against shimmy_py", "", "| | llama-bench | shimmy_py | ratio |", "|---|---|---|---|"]
    for key, label in (("prefill_tps", f"prompt {args['p']} tok/s"), ("decode_tps", f"decode {args['n']} tok/s")):
        lines.append(f"| {label} | {theirs[key]:.2f} | {ours[key]:.2f} | {ours[key] / theirs[key]:.3f} |")
    lines += ["", "## llama-server against shimmy-py serve (same client, /v1/completions, streamed)", "",
              "| server | clients | requests | TTFT ms (median) | tok/s per request (median) | aggregate tok/s |",
              "|---|---|---|---|---|---|"]
    for (name, clients), m in sorted(http.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {name} | {clients} | {m['requests']:.0f} | {m['ttft_ms']:.1f} | {m['request_tps']:.2f} | "
                     f"{m['aggregate_tps']:.2f} |")
    lines += ["", f"Planning the DeepSeekMoE 16B table (shape-only file, `fit` to 8 GiB): {plan_s * 1000:.0f} ms "
              "(median of 5).", ""]
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
