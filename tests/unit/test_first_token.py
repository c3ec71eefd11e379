"""The first token's way to a streaming client, piece by piece without
libllama: when the engine waits for its delivery (a pure function of the
step's slots), the supervisor telling the worker it was delivered, and the
handler making the first chunk so that it leaves with the head."""
import queue
import threading

from shimmy_py.generation.loop import Completion
from shimmy_py.generation.options import ModelOptions
from shimmy_py.serving import messages as m
from shimmy_py.serving.batch import SlotState, _Slot, awaited_deliveries
from shimmy_py.serving.streaming import _READY, _made_at_once
from shimmy_py.serving.supervisor import Supervisor, WorkerSpec


class _Req:
    def __init__(self, stream=True):
        self.delivered = threading.Event() if stream else None


def slot(seq, req, state=SlotState.DECODE):
    return _Slot(seq, req=req, sampler=None, pending=[], state=state)


def test_a_lone_new_stream_is_awaited():
    a = slot(0, _Req())
    assert awaited_deliveries([a], n_slots=1, n_waiting=0) == [a.req.delivered]


def test_no_wait_that_would_delay_anyone_else():
    a, b = slot(0, _Req()), slot(1, _Req())
    assert awaited_deliveries([a], n_slots=2, n_waiting=0) == []      # b decodes: it would wait too
    assert awaited_deliveries([a], n_slots=1, n_waiting=1) == []      # a request waits for its turn
    assert awaited_deliveries([a, b], n_slots=2, n_waiting=0) == [a.req.delivered, b.req.delivered]
    assert awaited_deliveries([], n_slots=0, n_waiting=0) == []


def test_only_streams_that_go_on_are_awaited():
    whole, done = slot(0, _Req(stream=False)), slot(1, _Req(), state=SlotState.DONE)
    assert awaited_deliveries([whole, done], n_slots=2, n_waiting=0) == []   # nothing decodes after a last token


class _Conn:
    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)


def _pieces(stream: bool):
    sup = Supervisor(WorkerSpec("model.gguf", ModelOptions(), queue_limit=4))
    sup._conn = _Conn()
    q = queue.SimpleQueue()
    q.put(m.Piece(7, " world"))
    q.put(m.Done(7, Completion(text="Hello world")))
    return sup._conn.sent, sup._pieces(7, q, m.Piece(7, "Hello"), stream)


def test_asking_for_a_streams_second_piece_says_the_first_was_delivered():
    sent, pieces = _pieces(stream=True)
    assert next(pieces) == ("content", "Hello") and sent == []
    assert next(pieces) == ("content", " world") and sent == [m.Delivered(7)]
    try:
        next(pieces)
    except StopIteration as end:
        assert end.value.text == "Hello world"
    assert sent == [m.Delivered(7)]


def test_a_whole_answer_says_nothing():
    sent, pieces = _pieces(stream=False)
    assert [p for p in pieces] == [("content", "Hello"), ("content", " world")] and sent == []


def test_the_chunks_up_to_the_first_pieces_are_made_at_once():
    def stream():
        yield b"data: role\n\n"
        yield b"data: Hello\n\n"
        yield _READY
        yield b"data: world\n\n"
    chunks = stream()
    assert _made_at_once(chunks) == b"data: role\n\ndata: Hello\n\n"
    assert list(chunks) == [b"data: world\n\n"]
