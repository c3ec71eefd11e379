"""Structured output over many seeds: the share of answers that parse and
validate within the token budget, shimmy-py serve beside llama-server
--jinja, on the same model and with the same client calls.

    python benchmarks/structured_output.py [--seeds 50] [--model PATH]

The model is `synth --behaviour tool-caller` (a Qwen3-MoE whose weights were
set by hand to think, call a tool or answer "It is sunny."): under a JSON
schema its grammar decides the shape and its random-ish logits the rest, so
whitespace, field values and length vary with the seed. Each call is made
once per seed (the seed sent with the request, temperature left at the
server's default), against both servers:
- openai: chat.completions.create with response_format json_schema;
- instructor: Mode.JSON_SCHEMA, max_retries=0;
- langchain: ChatOpenAI(...).with_structured_output(method="json_schema").
An answer counts if the client returns the validated object (no exception:
a length cut, JSON that does not parse, a schema mismatch all count
against). Prints a table of shares per call and server, and on how many
seeds both servers had the same outcome (the same object, or a failure of
the same kind).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402

from shimmy_py.native import install  # noqa: E402
from shimmy_py.procs import ServerProcess, free_port  # noqa: E402

MODEL = "tool-caller"
ASK = [{"role": "user", "content": "Weather in Paris, as JSON with city, celsius and sunny"}]
BUDGET = 96


class Weather(BaseModel):
    city: str
    celsius: int
    sunny: bool


def openai_call(url: str, seed: int):
    from openai import OpenAI
    client = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=BUDGET, seed=seed,
                                       response_format={"type": "json_schema", "json_schema": {
                                           "name": "weather", "schema": Weather.model_json_schema()}})
    return Weather.model_validate(json.loads(r.choices[0].message.content))


def instructor_call(url: str, seed: int):
    import instructor
    from openai import OpenAI
    client = instructor.from_openai(OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120),
                                    mode=instructor.Mode.JSON_SCHEMA)
    return client.chat.completions.create(model=MODEL, response_model=Weather, messages=ASK, max_retries=0,
                                          max_tokens=BUDGET, seed=seed)


def langchain_call(url: str, seed: int):
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(model=MODEL, base_url=url + "/v1", api_key="none", max_retries=0, timeout=120,
                     max_tokens=BUDGET, seed=seed)
    return llm.with_structured_output(Weather, method="json_schema").invoke(ASK[0]["content"])


CALLS = {"openai json_schema": openai_call, "instructor JSON_SCHEMA": instructor_call,
         "langchain json_schema": langchain_call}


def shares(url: str, seeds: int) -> dict[str, tuple[int, dict, list]]:
    """Per call: answers validated, failures by kind, and each seed's outcome
    (the object, or the exception's kind)."""
    out = {}
    for name, call in CALLS.items():
        ok, why, outcomes = 0, {}, []
        for seed in range(seeds):
            try:
                outcomes.append(repr(call(url, seed)))
                ok += 1
            except Exception as e:  # the client's own verdict: count it, keep the kind
                why[type(e).__name__] = why.get(type(e).__name__, 0) + 1
                outcomes.append(type(e).__name__)
        out[name] = (ok, why, outcomes)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--model", default=None, help="a GGUF (served as 'tool-caller'); default: the tool-caller, "
                    "written to a temporary folder")
    args = ap.parse_args()
    from shimmy_py.synthetic.behaviours import tool_caller
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / f"{MODEL}.gguf"                 # the name both servers answer to
    if args.model:
        path.symlink_to(Path(args.model).resolve())
    else:
        tool_caller(path)
    ours_port, peer_port = free_port(), free_port()
    ours = [sys.executable, "-m", "shimmy_py", "serve", "--model", str(path), "--port", str(ours_port),
            "--ctx", "4096", "--parallel", "2", "--threads", "2"]
    peer = [str(install.tool("llama-server")), "-m", str(path), "-c", "8192", "-np", "2", "-t", "2", "--host",
            "127.0.0.1", "--port", str(peer_port), "--no-webui", "--jinja", "--alias", MODEL]
    results = {}
    for name, argv, port in (("shimmy-py", ours, ours_port), ("llama-server", peer, peer_port)):
        with ServerProcess(argv, port, timeout=120) as srv:
            results[name] = shares(srv.url, args.seeds)
    print(f"structured output, {args.seeds} seeds per call, {BUDGET} tokens at most "
          f"(model {Path(args.model).name if args.model else 'the tool-caller'})")
    print(f"{'call':<24} {'shimmy-py':>10} {'llama-server':>13} {'same outcome':>13}   "
          "failures (shimmy-py | llama-server)")
    for call in CALLS:
        (a, wa, oa), (b, wb, ob) = results["shimmy-py"][call], results["llama-server"][call]
        same = sum(x == y for x, y in zip(oa, ob))
        print(f"{call:<24} {a / args.seeds:>10.2f} {b / args.seeds:>13.2f} {f'{same}/{args.seeds}':>13}   "
              f"{wa or '-'} | {wb or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
