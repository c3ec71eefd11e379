"""The answers' shapes: shimmy's /api/generate object and OpenAI's chat and
text completions, whole or as stream chunks (deltas of content, reasoning
and tool calls), with usage and timings."""
from __future__ import annotations

import time
import uuid

from ...generation.loop import Completion


def usage(c: Completion, more: list[Completion] = ()) -> dict:
    """Token counts; with `more` (n > 1 choices of one prompt) the prompt
    once and every choice's completion."""
    out = sum(x.completion_tokens for x in more) + c.completion_tokens
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": out, "total_tokens": c.prompt_tokens + out,
            "prompt_tokens_details": {"cached_tokens": c.cached_tokens}}


def timing(c: Completion) -> dict:
    """TTFT and decode speed; with speculative decoding, llama-server's
    draft_n and draft_n_accepted."""
    drafts = {"draft_n": c.drafted, "draft_n_accepted": c.draft_accepted} if c.drafted else {}
    return {"ttft_ms": round(c.ttft_s * 1000, 2),
            "tokens_per_second": round(c.tokens_per_s, 2) if c.tokens_per_s else None, **drafts}


def routed_prompt(c: Completion) -> dict:
    """With return_routed_experts: the prompt's routing (tokens, MoE layers, k)
    and which layers those are; each generated token's but the last (never fed
    through the model) is in its choice's routed_experts."""
    if c.experts is None:
        return {}
    return {"prompt_routed_experts": c.experts.ids[:c.experts.n_prompt].tolist(),
            "routed_experts_layers": list(c.experts.layers)}


def routed_answer(c: Completion) -> list:
    """With return_routed_experts: the generated tokens' routing (but the last's)."""
    return c.experts.ids[c.experts.n_prompt:].tolist()


def generate_response(model: str, c: Completion) -> dict:
    """shimmy's /api/generate answer, with usage and timing added."""
    extra = {**routed_prompt(c), "routed_experts": routed_answer(c)} \
        if c.experts is not None else {}
    return {"response": c.text, "model": model, "done": True, "finish_reason": c.finish_reason,
            **usage(c), **timing(c), **extra}


class OpenAIShapes:
    """Builds the objects of one OpenAI-style response (one id, one timestamp)."""

    def __init__(self, model: str, chat: bool):
        self.model, self.chat = model, chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.calls = 0                    # tool calls streamed so far: their index
        self.index = 0                    # the choice being streamed (n > 1)

    def _wrap(self, obj: str, choices: list, **extra) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": choices, **extra}

    def message(self, c: Completion) -> dict:
        msg = {"role": "assistant", "content": c.text if (c.text or not c.tool_calls) else None}
        if c.reasoning:
            msg["reasoning_content"] = c.reasoning
        if c.tool_calls:
            msg["tool_calls"] = [call.message() for call in c.tool_calls]
        return msg

    def logprobs(self, c: Completion | None):
        """OpenAI's logprobs of a choice: chat's {"content": [...]}, or the
        legacy completions form (tokens, token_logprobs, top_logprobs, text_offset)."""
        if c is None or c.logprobs is None:
            return None
        if self.chat:
            return {"content": c.logprobs, "refusal": None}
        offsets, at = [], 0
        for e in c.logprobs:
            offsets.append(at)
            at += len(e["token"])
        return {"tokens": [e["token"] for e in c.logprobs], "token_logprobs": [e["logprob"] for e in c.logprobs],
                "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in c.logprobs],
                "text_offset": offsets}

    def choice(self, c: Completion, index: int = 0) -> dict:
        if self.chat:
            out = {"index": index, "message": self.message(c), "finish_reason": c.finish_reason,
                   "logprobs": self.logprobs(c)}
        else:
            out = {"index": index, "text": c.text, "logprobs": self.logprobs(c), "finish_reason": c.finish_reason}
        if c.experts is not None:    # vLLM's field: (generated tokens routed, MoE layers, k)
            out["routed_experts"] = routed_answer(c)
        return out

    def final(self, c: Completion, more: list[Completion] = ()) -> dict:
        """The whole answer; `more`: the other choices of an n > 1 request."""
        choices = [self.choice(x, i) for i, x in enumerate([c, *more])]
        return self._wrap("chat.completion" if self.chat else "text_completion", choices, usage=usage(c, more),
                          **routed_prompt(c))

    def chunk(self, piece: str | None, finish: str | None = None, first: bool = False, c=None,
              kind: str = "content", value=None, with_usage: bool = False) -> dict:
        """A stream chunk: the opening role, a content or reasoning delta, a
        tool call (whole: its id, name and arguments in one fragment), or a
        choice's last chunk with finish_reason (and its usage, `with_usage`)."""
        extra = {"usage": usage(c)} if c is not None and with_usage else {}
        if self.chat:
            if first:
                delta = {"role": "assistant", "content": ""}
            elif kind == "tool_call":
                delta = {"tool_calls": [{"index": self.calls, **value.message()}]}
                self.calls += 1
            elif piece is None:
                delta = {}
            else:
                delta = {"reasoning_content" if kind == "reasoning" else "content": piece}
            return self._wrap("chat.completion.chunk",
                              [{"index": self.index, "delta": delta, "finish_reason": finish,
                                "logprobs": self.logprobs(c)}], **extra)
        return self._wrap("text_completion", [{"index": self.index, "text": piece or "", "logprobs": self.logprobs(c),
                                               "finish_reason": finish}], **extra)

    def usage_chunk(self, c: Completion, more: list[Completion] = ()) -> dict:
        """stream_options.include_usage: the last chunk, no choices, the usage."""
        return self._wrap("chat.completion.chunk" if self.chat else "text_completion", [], usage=usage(c, more))
