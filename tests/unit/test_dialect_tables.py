"""Every field of every dialect's table (serving/dialects/jobs.py reads
them), mapped to the job without a server: each example sends one field
beside a minimal body and checks where it lands in the request; a field the
server refuses names itself in the error. A table field with no example
here fails `test_every_field_has_an_example`, so a field added to a dialect
comes with its mapping's test."""
from __future__ import annotations

import pytest

from shimmy_py.generation.grammar import JSON_OBJECT
from shimmy_py.serving.dialects import anthropic, ollama, parse, responses
from shimmy_py.serving.dialects.jobs import Sub
from shimmy_py.serving.http.errors import ApiError

ASK = [{"role": "user", "content": "Hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
REFUSED = "refused"


def _same(base):
    """The check of a field that changes nothing: the request is the base's."""
    return lambda gr, translate: gr == translate(base)


def _sampling(name, value):
    return {name: value}, lambda gr, _: getattr(gr.job.sampling, name) == value


def _openai(route):
    """OpenAI's chat and completions and shimmy's generate share most fields."""
    base = {"prompt": "Hi"} if route == "completions" else {"messages": ASK}
    examples = {
        "model": ({"model": "m"}, lambda gr, _: gr.model == "m"),
        "max_tokens": ({"max_tokens": 7}, lambda gr, _: gr.job.max_tokens == 7),
        "stream": ({"stream": route != "generate"}, lambda gr, _: gr.stream == (route != "generate")),
        "stop": ({"stop": "x"}, lambda gr, _: gr.job.stop == ("x",)),
        "keep_alive": ({"keep_alive": "5m"}, lambda gr, _: gr.keep_alive == 300.0),
        "return_routed_experts": ({"return_routed_experts": True, "stream": False}, lambda gr, _: gr.job.experts),
        "logit_bias": ({"logit_bias": {"5": 1}}, lambda gr, _: gr.job.sampling.logit_bias == ((5, 1.0),)),
        "temperature": _sampling("temperature", 0.25), "top_k": _sampling("top_k", 3),
        "top_p": _sampling("top_p", 0.5), "min_p": _sampling("min_p", 0.2),
        "repeat_penalty": _sampling("repeat_penalty", 1.3), "repeat_last_n": _sampling("repeat_last_n", 8),
        "frequency_penalty": _sampling("frequency_penalty", 0.5), "presence_penalty": _sampling("presence_penalty", -1),
        "seed": _sampling("seed", 9),
        **{key: ({key: "x"}, _same(base)) for key in ("user", "service_tier", "safety_identifier",
                                                      "prompt_cache_key")},
        "metadata": ({"metadata": {"a": "b"}}, _same(base)), "store": ({"store": False}, _same(base)),
        "prediction": ({"prediction": {"type": "content", "content": "x"}}, _same(base)),
        "cache_prompt": ({"cache_prompt": False}, REFUSED), "modalities": ({"modalities": ["audio"]}, REFUSED),
        "response_format": ({"response_format": {"type": "json_object"}},
                            lambda gr, _: gr.job.sampling.grammar == JSON_OBJECT),
        "grammar": ({"grammar": 'root ::= "a"'}, lambda gr, _: gr.job.sampling.grammar == 'root ::= "a"'),
        "json_schema": ({"json_schema": {"type": "string"}}, lambda gr, _: "root" in gr.job.sampling.grammar),
    }
    chat = {
        "messages": ({"messages": ASK}, lambda gr, _: gr.job.messages == ASK),
        "tools": ({"tools": [TOOL]}, lambda gr, _: [t.name for t in gr.job.chat.tools] == ["f"]),
        "tool_choice": ({"tool_choice": "none"}, lambda gr, _: gr.job.chat.tool_choice == "none"),
        "parallel_tool_calls": ({"parallel_tool_calls": False}, lambda gr, _: not gr.job.chat.parallel_tool_calls),
        "functions": ({"functions": [TOOL["function"]]}, lambda gr, _: gr.job.chat.tools[0].name == "f"),
        "function_call": ({"functions": [TOOL["function"]], "function_call": {"name": "f"}},
                          lambda gr, _: gr.job.chat.tool_choice == "f"),
        "reasoning_format": ({"reasoning_format": "none"}, lambda gr, _: gr.job.chat.reasoning_format == "none"),
        "chat_template_kwargs": ({"chat_template_kwargs": {"a": 1}},
                                 lambda gr, _: gr.job.chat.template_kwargs == {"a": 1}),
        "reasoning_effort": ({"reasoning_effort": "none"},
                             lambda gr, _: gr.job.chat.template_kwargs == {"enable_thinking": False}),
        "max_completion_tokens": ({"max_completion_tokens": 5}, lambda gr, _: gr.job.max_tokens == 5),
    }
    choices = {"n": ({"n": 3}, lambda gr, _: gr.n == 3),
               "stream_options": ({"stream": True, "stream_options": {"include_usage": True}},
                                  lambda gr, _: gr.include_usage)}
    if route == "generate":
        return base, {**examples, **chat, "n": ({"n": 1}, _same(base)),
                      "prompt": ({"prompt": "Hi", "messages": None}, lambda gr, _: gr.job.prompt == "Hi"),
                      "system": ({"system": "Be brief."},
                                 lambda gr, _: gr.job.messages[0] == {"role": "system", "content": "Be brief."})}
    if route == "chat":
        return base, {**examples, **chat, **choices,
                      "logprobs": ({"logprobs": True}, lambda gr, _: gr.job.logprobs == 0),
                      "top_logprobs": ({"logprobs": True, "top_logprobs": 3}, lambda gr, _: gr.job.logprobs == 3)}
    return base, {**examples, **choices, "prompt": ({"prompt": "Yo"}, lambda gr, _: gr.job.prompt == "Yo"),
                  "logprobs": ({"logprobs": 2}, lambda gr, _: gr.job.logprobs == 2)}


def _ollama(generate: bool):
    base = {"model": "m", "prompt": "Hi"} if generate else {"model": "m", "messages": ASK}
    options = {f"options.{key}": ({"options": {key: value}},
                                  lambda gr, _, key=key, value=value: getattr(gr.job.sampling, key) == value)
               for key, value in (("temperature", 0.3), ("top_k", 2), ("top_p", 0.4), ("min_p", 0.1),
                                  ("repeat_penalty", 1.2), ("repeat_last_n", 5), ("seed", 4),
                                  ("presence_penalty", 0.5), ("frequency_penalty", 0.25))}
    options.update({
        "options.stop": ({"options": {"stop": ["x"]}}, lambda gr, _: gr.job.stop == ("x",)),
        "options.num_predict": ({"options": {"num_predict": 6}}, lambda gr, _: gr.job.max_tokens == 6),
        "options.num_ctx": ({"options": {"num_ctx": 512}}, lambda gr, _: gr.job.context_limit == 512),
        **{f"options.{key}": ({"options": {key: value}}, _same(base))
           for key, value in ollama.NEUTRAL_OPTIONS.items()},
        **{f"options.{key}": ({"options": {key: 1}}, REFUSED) for key in ollama.LOAD_OPTIONS},
    })
    examples = {
        "model": ({"model": "n"}, lambda gr, _: gr.model == "n"),
        "format": ({"format": "json"}, lambda gr, _: gr.job.sampling.grammar == JSON_OBJECT),
        "stream": ({"stream": False}, lambda gr, _: gr.stream is False),
        "keep_alive": ({"keep_alive": 0}, lambda gr, _: gr.keep_alive == 0),
        "think": ({"think": False}, lambda gr, _: gr.job.chat.reasoning_format == "deepseek"
                  and gr.job.chat.template_kwargs == {"enable_thinking": False}),
        "logprobs": ({"logprobs": True}, lambda gr, _: gr.job.logprobs == 0),
        "top_logprobs": ({"logprobs": True, "top_logprobs": 2}, lambda gr, _: gr.job.logprobs == 2),
        **options,
    }
    if not generate:
        return base, {**examples, "tools": ({"tools": [TOOL]}, lambda gr, _: gr.job.chat.tools[0].name == "f"),
                      "messages": ({"messages": [{"role": "assistant", "content": "a", "thinking": "t"}]},
                                   lambda gr, _: gr.job.messages == [{"role": "assistant", "content": "a",
                                                                      "reasoning_content": "t"}])}
    return base, {**examples,
                  "prompt": ({"prompt": "Yo"}, lambda gr, _: gr.job.messages == [{"role": "user", "content": "Yo"}]),
                  "system": ({"system": "S"}, lambda gr, _: gr.job.messages[0] == {"role": "system", "content": "S"}),
                  "raw": ({"raw": True}, lambda gr, _: gr.job.prompt == "Hi" and gr.job.messages is None),
                  "images": ({"images": ["aGk="]}, REFUSED), "suffix": ({"suffix": "x"}, REFUSED),
                  "template": ({"template": "x"}, REFUSED), "context": ({"context": [1, 2]}, REFUSED)}


def _anthropic():
    base = {"model": "m", "max_tokens": 5, "messages": ASK}
    schema = {"type": "object", "properties": {}}
    return base, {
        "model": ({"model": "n"}, lambda gr, _: gr.model == "n"),
        "messages": ({"messages": [{"role": "user", "content": [{"type": "text", "text": "Yo"}]}]},
                     lambda gr, _: gr.job.messages == [{"role": "user", "content": "Yo"}]),
        "system": ({"system": [{"type": "text", "text": "S"}]},
                   lambda gr, _: gr.job.messages[0] == {"role": "system", "content": "S"}),
        "tools": ({"tools": [{"name": "f", "input_schema": schema}]},
                  lambda gr, _: gr.job.chat.tools[0].name == "f"),
        "tool_choice": ({"tools": [{"name": "f", "input_schema": schema}],
                         "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True}},
                        lambda gr, _: gr.job.chat.tool_choice == "f" and not gr.job.chat.parallel_tool_calls),
        "thinking": ({"thinking": {"type": "disabled"}},
                     lambda gr, _: gr.job.chat.template_kwargs == {"enable_thinking": False}),
        "cache_control": ({"cache_control": {"type": "ephemeral"}}, _same(base)),
        "output_config": ({"output_config": {"format": {"type": "json_schema", "schema": schema}, "effort": "max"}},
                          lambda gr, _: gr.job.sampling.grammar and gr.job.chat.template_kwargs == {
                              "reasoning_effort": "high"}),
        "max_tokens": ({"max_tokens": 9}, lambda gr, _: gr.job.max_tokens == 9),
        "stop_sequences": ({"stop_sequences": ["END"]}, lambda gr, _: gr.job.stop == ("END",)),
        "stream": ({"stream": True}, lambda gr, _: gr.stream),
        "metadata": ({"metadata": {"user_id": "u"}}, _same(base)),
        "service_tier": ({"service_tier": "auto"}, _same(base)),
        "temperature": _sampling("temperature", 0.5), "top_p": _sampling("top_p", 0.9), "top_k": _sampling("top_k", 7),
    }


def _responses():
    base = {"model": "m", "input": "Hi"}
    fn = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    return base, {
        "model": ({"model": "n"}, lambda gr, _: gr.model == "n"),
        "input": ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Yo"}]}]},
                  lambda gr, _: gr.job.messages == [{"role": "user", "content": "Yo"}]),
        "instructions": ({"instructions": "S"}, lambda gr, _: gr.job.messages[0] == {"role": "system", "content": "S"}),
        "tools": ({"tools": [fn]}, lambda gr, _: gr.job.chat.tools[0].name == "f"),
        "tool_choice": ({"tools": [fn], "tool_choice": {"type": "function", "name": "f"}},
                        lambda gr, _: gr.job.chat.tool_choice == "f"),
        "parallel_tool_calls": ({"parallel_tool_calls": False}, lambda gr, _: not gr.job.chat.parallel_tool_calls),
        "max_output_tokens": ({"max_output_tokens": 4}, lambda gr, _: gr.job.max_tokens == 4),
        "temperature": _sampling("temperature", 0.5), "top_p": _sampling("top_p", 0.9),
        "stream": ({"stream": True}, lambda gr, _: gr.stream),
        "stream_options": ({"stream": True, "stream_options": {"include_usage": True}}, lambda gr, _: gr.include_usage),
        "text": ({"text": {"format": {"type": "json_object"}}}, lambda gr, _: gr.job.sampling.grammar == JSON_OBJECT),
        "reasoning": ({"reasoning": {"effort": "low"}},
                      lambda gr, _: gr.job.chat.template_kwargs == {"reasoning_effort": "low"}),
        **{key: ({key: "x"}, _same(base)) for key in ("user", "service_tier", "prompt_cache_key", "safety_identifier")},
        "store": ({"store": False}, _same(base)), "metadata": ({"metadata": {}}, _same(base)),
        "previous_response_id": ({"previous_response_id": "resp_1"}, REFUSED),
        "truncation": ({"truncation": "auto"}, REFUSED), "include": ({"include": ["reasoning.encrypted_content"]},
                                                                    REFUSED),
    }


DIALECTS = {   # name: (its table, how a body becomes a request, (base body, {field: (fragment, check)}))
    **{f"openai-{route}": (parse.TABLES[route], lambda b, route=route: parse.parse_request(b, route), _openai(route))
       for route in ("chat", "completions", "generate")},
    "ollama-chat": (ollama.CHAT, ollama.chat_request, _ollama(False)),
    "ollama-generate": (ollama.GENERATE, ollama.generate_request, _ollama(True)),
    "anthropic": (anthropic.TABLE, anthropic.request, _anthropic()),
    "responses": (responses.TABLE, lambda b: responses.request(b)[0], _responses()),
}


def _fields(table, prefix=""):
    return {name for key, entry in table.items()
            for name in (_fields(entry.table, f"{prefix}{key}.") if isinstance(entry, Sub) else {prefix + key})}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_every_field_has_an_example(dialect):
    table, _, (_, examples) = DIALECTS[dialect]
    assert _fields(table) == set(examples)


CASES = [(dialect, field) for dialect in sorted(DIALECTS) for field in sorted(DIALECTS[dialect][2][1])]


@pytest.mark.parametrize("dialect, field", CASES, ids=[f"{d}:{f}" for d, f in CASES])
def test_each_field_lands_in_the_job(dialect, field):
    _, translate, (base, examples) = DIALECTS[dialect]
    fragment, check = examples[field]
    body = {k: val for k, val in {**base, **fragment}.items() if val is not None}
    if check == REFUSED:
        with pytest.raises(ApiError) as e:
            translate(body)
        assert f"'{field}'" in e.value.message and e.value.status == 400
        return
    assert check(translate(body), translate), body
