"""The engine's wait for a lone new stream's first token to reach its client
(Engine._await_delivery), with the real engine on the tiny model: the step
after the first token waits for the delivery, and never when another
sequence would wait with it."""
import threading

import pytest
from support.batch_noise import EXACT

from shimmy_py import Model
from shimmy_py.generation.sampling import SamplingParams
from shimmy_py.serving import engine as engine_module
from shimmy_py.serving.engine import Engine

GREEDY = SamplingParams(temperature=0)


@pytest.fixture
def engine(tiny_path, monkeypatch):
    """An engine over two sequences whose decodes are logged; a wait for
    delivery lasts as long as a test needs (30 s), so that what it shows
    does not depend on how fast this machine is."""
    monkeypatch.setattr(engine_module, "DELIVERY_WAIT_S", 30.0)
    with Model(tiny_path, n_ctx=512, n_seq_max=2, n_threads=2, **EXACT) as m:
        log, decode = [], m.context.decode

        def logged(*args, **kw):
            log.append("decode")
            return decode(*args, **kw)
        m.context.decode = logged
        eng = Engine(m.context, m.vocab)
        try:
            yield eng, m, log
        finally:
            eng.close()


def test_the_step_after_a_lone_streams_first_token_waits_for_its_delivery(engine):
    eng, m, log = engine
    delivered = threading.Event()
    seq = eng.submit(m.tokenize("Hello there"), GREEDY, 4, delivered=delivered)
    assert seq.next_token() is not None
    log.append("first token")
    threading.Timer(0.3, lambda: (log.append("delivered"), delivered.set())).start()
    for _ in range(3):
        assert seq.next_token() is not None
    first = log.index("first token")
    assert log[first:first + 3] == ["first token", "delivered", "decode"]


def test_a_new_stream_beside_a_decoding_one_does_not_wait(engine):
    """b arrives while a decodes: its first token's step is a's too, so
    nothing waits for b's delivery, which never comes."""
    eng, m, log = engine
    a = eng.submit(m.tokenize("A long answer"), GREEDY, 200)
    assert a.next_token() is not None
    never = threading.Event()
    b = eng.submit(m.tokenize("Short"), GREEDY, 3, delivered=never)
    got = []
    reader = threading.Thread(target=lambda: got.extend(b.next_token() for _ in range(3)))
    reader.start()
    reader.join(timeout=20)        # far below the 30 s a wait would take
    a.close()
    assert not reader.is_alive() and len(got) == 3 and None not in got
    assert not never.is_set()
