"""A stream's first chunks are made on the handler's thread, which waited for
the first piece, so that the transport writes them with the head."""
from shimmy_py.serving.dialects.streaming import _READY, _made_at_once


def test_the_chunks_up_to_the_first_pieces_are_made_at_once():
    def stream():
        yield b"data: role\n\n"
        yield b"data: Hello\n\n"
        yield _READY
        yield b"data: world\n\n"
    chunks = stream()
    assert _made_at_once(chunks) == b"data: role\n\ndata: Hello\n\n"
    assert list(chunks) == [b"data: world\n\n"]


def test_a_stream_without_pieces_is_made_whole():
    chunks = iter([b"data: [DONE]\n\n"])
    assert _made_at_once(chunks) == b"data: [DONE]\n\n" and list(chunks) == []
