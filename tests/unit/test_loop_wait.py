"""The generation loop advanced without blocking (the server's worker runs
every open generation on the engine's thread after each step): a source
with no token yet returns WAIT, which run() and every relay() stage yield as
it is; called again, they go on. What comes out between the WAITs is what a
blocking source gives, so the worker's answers are the same tokens and text
as the Python API's. Pure: a fake vocabulary and source, no libllama."""
from __future__ import annotations

import time

from shimmy_py.generation.chatting import ChatParser, structured
from shimmy_py.generation.loop import WAIT, drain, relay, run

TEXTS = {1: "Hel", 2: "lo", 3: " wor", 4: "ld", 5: "STOP", 9: ""}
EOG = 9


class Vocab:
    def is_eog(self, token: int) -> bool:
        return token == EOG

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        return TEXTS[token].encode()


class Source:
    """Hands `items` in turn; WAIT items stand for a step that has not come."""
    def __init__(self, items):
        self.items, self.prompt_tokens, self.cached_tokens, self.t_start = list(items), 3, 0, time.perf_counter()
        self.closed = False

    def next_token(self):
        return self.items.pop(0)

    def close(self):
        self.closed = True


def _advance(gen) -> tuple[list, object]:
    """Steps through `gen` as the worker does: pieces between WAITs, then the Completion."""
    out = []
    while True:
        try:
            item = next(gen)
        except StopIteration as done:
            return out, done.value
        out.append(item)


def test_wait_passes_through_run_and_the_pieces_are_a_blocking_sources():
    tokens = [1, 2, 3, 4, EOG]
    blocking = drain(run(Source(tokens), Vocab(), 16))
    items, completion = _advance(run(Source([WAIT, 1, WAIT, WAIT, 2, 3, WAIT, 4, EOG]), Vocab(), 16))
    assert items.count(WAIT) == 4
    assert "".join(i for i in items if i is not WAIT) == blocking.text == completion.text == "Hello world"
    assert (completion.tokens, completion.finish_reason) == (blocking.tokens, "stop")


def test_a_stop_string_held_back_across_a_wait_still_stops():
    items, completion = _advance(run(Source([1, WAIT, 2, 5, WAIT, 3]), Vocab(), 16, stop=["loST"]))
    assert "".join(i for i in items if i is not WAIT) == "Hel" and completion.stop_word == "loST"


def test_every_relay_stage_yields_wait_and_closing_closes_the_source():
    source = Source([WAIT, 1, WAIT, 2])
    gen = relay(run(source, Vocab(), 16), lambda piece: (("content", piece),))
    assert next(gen) is WAIT
    assert next(gen) == ("content", "Hel")
    assert next(gen) is WAIT
    gen.close()
    assert source.closed


def test_a_chat_parser_sees_the_same_text_across_waits():
    """Thinking split from the answer by the parser, the WAITs between its pieces."""
    texts = {**TEXTS, 6: "<think>", 7: "hm", 8: "</think>"}
    vocab = Vocab()
    vocab.token_bytes = lambda token, special=False: texts[token].encode()
    items, completion = _advance(structured(run(Source([6, WAIT, 7, 8, WAIT, 1, 2, EOG]), vocab, 16),
                                            ChatParser(None, False, "deepseek")))
    assert WAIT in items
    assert (completion.reasoning, completion.text) == ("hm", "Hello")
