"""parse_request: every field checked up front, with a message naming it."""
import pytest

from shimmy_py import defaults
from shimmy_py.serving.dialects.parse import parse_request
from shimmy_py.serving.http.errors import ApiError


def test_generate_defaults_follow_shimmy_and_openai_routes_llama_server():
    g = parse_request({"prompt": "hi"}, "generate")
    assert g.job.prompt == "hi" and g.job.messages is None and g.stream is True
    assert g.job.max_tokens == defaults.MAX_TOKENS and g.job.sampling.temperature == 0.8
    c = parse_request({"prompt": "hi"}, "completions")
    assert c.stream is False and c.job.max_tokens is None      # the rest of the context
    chat = parse_request({"messages": [{"role": "user", "content": "hi"}]}, "chat")
    assert chat.job.messages == [{"role": "user", "content": "hi"}] and chat.job.prompt is None


def test_fields_are_read():
    r = parse_request({"prompt": "x", "temperature": 0, "top_k": 5, "top_p": 0.5, "min_p": 0.1,
                       "repeat_penalty": 1.1, "seed": 7, "stop": "END", "max_tokens": 9,
                       "logit_bias": {"12": -1.5}, "model": "m", "user": "u-1", "metadata": {"a": "b"}}, "completions")
    s = r.job.sampling
    assert (s.temperature, s.top_k, s.top_p, s.min_p, s.repeat_penalty, s.seed) == (0, 5, 0.5, 0.1, 1.1, 7)
    assert s.logit_bias == ((12, -1.5),) and r.job.stop == ("END",) and r.job.max_tokens == 9 and r.model == "m"


def test_system_and_content_parts():
    r = parse_request({"system": "Be brief.", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}, "generate")
    assert r.job.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ab"}]


def test_unknown_fields_are_named_not_ignored_and_harmless_ones_pass():
    """An ignored field turns a missing feature into wrong output: each is a
    400 naming it; OpenAI's optional fields that change nothing a local
    server computes pass (langchain, the agents SDK and litellm send them)."""
    for body in ({"prompt": "x", "suffix": "y"}, {"prompt": "x", "echo": True}, {"prompt": "x", "best_of": 2}):
        with pytest.raises(ApiError, match=f"unsupported field {next(k for k in body if k != 'prompt')!r}"):
            parse_request(body, "completions")
    with pytest.raises(ApiError, match="'image_url' part"):
        parse_request({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "chat")
    with pytest.raises(ApiError, match="unsupported field 'audio'"):
        parse_request({"messages": [{"role": "user", "content": "x"}], "audio": {}}, "chat")
    r = parse_request({"messages": [{"role": "user", "content": "x"}], "user": "u", "store": False,
                       "metadata": {}, "service_tier": "auto", "parallel_tool_calls": False,
                       "stream_options": {"include_usage": True}, "max_completion_tokens": 8}, "chat")
    assert r.job.max_tokens == 8 and r.include_usage and not r.job.chat.parallel_tool_calls


def test_tool_turns_and_tools_are_read():
    body = {"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    r = parse_request(body, "chat")
    assert r.job.messages[1]["content"] is None
    assert r.job.messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert r.job.messages[2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    assert [t.name for t in r.job.chat.tools] == ["get_weather"] and r.job.chat.tool_choice == "get_weather"
    legacy = parse_request({"messages": body["messages"][:1], "functions": [body["tools"][0]["function"]],
                            "function_call": {"name": "get_weather"}}, "chat")
    assert legacy.job.chat.tool_choice == "get_weather"
    for bad, message in [({"tool_choice": "required"}, "no tools are offered"),
                         ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
                             "type": "object", "properties": {"x": {"type": "string", "not": {}}}}}}]}, "'not'"),
                         ({"tools": body["tools"], "response_format": {"type": "json_object"}}, "cannot be combined"),
                         ({"response_format": {"type": "json_schema", "json_schema": {"schema": {
                             "type": "number", "multipleOf": 1}}}}, "multipleOf"),
                         ({"reasoning_format": "maybe"}, "reasoning_format")]:
        with pytest.raises(ApiError, match=message):
            parse_request({"messages": body["messages"][:1], **bad}, "chat")


@pytest.mark.parametrize("body, route, message", [
    ([1], "generate", "JSON object"),
    ({}, "generate", "'prompt' is required (or 'messages')"),
    ({"prompt": ""}, "completions", "'prompt' is empty"),
    ({"prompt": 1}, "completions", "'prompt' must be str"),
    ({"prompt": "x", "max_tokens": True}, "completions", "got a boolean"),
    ({"prompt": "x", "max_tokens": 0}, "completions", "'max_tokens' must be >= 1"),
    ({"prompt": "x", "temperature": float("nan")}, "completions", "finite"),
    ({"prompt": "x", "top_p": 0}, "completions", "'top_p' must be between"),
    ({"prompt": "x", "seed": 2**32}, "completions", "'seed' must be between"),
    ({"prompt": "x", "stop": ["a", 1]}, "completions", "list of strings"),
    ({"prompt": "x", "logit_bias": {"a": 1}}, "completions", "maps token ids"),
    ({"prompt": "x", "stream": "yes"}, "completions", "'stream' must be bool"),
    ({"messages": []}, "chat", "'messages' is empty"),
    ({"messages": [{"content": "x"}]}, "chat", "messages[0]"),
    ({"messages": [{"role": "user", "content": 5}]}, "chat", "messages[0].content"),
    ({"prompt": "x"}, "chat", "unsupported field 'prompt'"),
    ({"model": "x"}, "chat", "'messages' is required"),
    ({"prompt": "a\ud800b"}, "completions", "lone UTF-16 surrogate"),
    ({"prompt": "x", "stop": ["\udfff"]}, "completions", "lone UTF-16 surrogate"),
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "chat", "lone UTF-16 surrogate"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "chat", ".text must be a string"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "chat", "must be a string"),
    ({"messages": [{"role": "user", "content": [5]}]}, "chat", "string 'type'"),
    ({"prompt": "x", "logit_bias": {"\u00b2": 1}}, "completions", "maps token ids"),
    ({"prompt": "x", "n": 17}, "completions", "'n' must be between 1 and 16"),
    ({"prompt": "x", "stop": ["s"] * 17}, "completions", "at most 16 strings"),
    ({"prompt": "x", "stop": "s" * 1025}, "completions", "at most 1024 characters"),
    ({"messages": [{"role": "user", "content": "x"}] * 4097}, "chat", "at most 4096"),
])
def test_bad_fields_name_themselves(body, route, message):
    with pytest.raises(ApiError) as e:
        parse_request(body, route)
    assert e.value.status == 400 and message in e.value.message


def test_a_jinja_chat_template_is_rendered_with_llama_cpps_workarounds():
    """Pure: the renderer behind chat() (tests/test_chat_templates.py compares
    real templates with llama-server's)."""
    import pytest as _pytest

    from shimmy_py.errors import GenerationError
    from shimmy_py.generation.chat import SpecialTokens, is_jinja, render
    special = SpecialTokens("<s>", "</s>", True, False)
    no_system = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
                 "{{ raise_exception('no system') }}{% endif %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}[assistant]{% endif %}")
    msgs = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert render(no_system, msgs, special, True) == "[user] Be brief.\nHi\n[assistant]"   # merged, BOS cut
    assert is_jinja(no_system) and not is_jinja("chatml")
    with _pytest.raises(GenerationError, match="refused the messages: no system"):
        render(no_system.replace("if m['role'] == 'system'", "if m['role'] == 'user'"), msgs, special, True)
    with _pytest.raises(GenerationError, match="failed"):
        render("{{ messages[5]['content'] }}", msgs, special, True)
