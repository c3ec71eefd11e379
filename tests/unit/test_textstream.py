"""Text pieces: whole UTF-8 characters, stop strings held back and cut."""
from shimmy_py.generation.textstream import PieceDecoder, StopMatcher


def test_multibyte_character_split_across_tokens_is_held_back():
    d = PieceDecoder()
    raw = "héllo 🦙".encode()
    pieces = [d.feed(raw[i:i + 1]) for i in range(len(raw))] + [d.flush()]
    assert "".join(pieces) == "héllo 🦙"
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[raw.index("🦙".encode()) + 3] == "🦙"


def test_stop_string_across_pieces():
    m = StopMatcher(["END"])
    out = []
    for piece in ["abc E", "N", "D tail"]:
        text, hit = m.push(piece)
        out.append(text)
        if hit:
            break
    assert "".join(out) == "abc " and hit


def test_partial_stop_that_never_completes_is_released():
    m = StopMatcher(["</s>"])
    assert m.push("x </") == ("x ", False)
    assert m.push("p") == ("</p", False)
    assert m.push("</") == ("", False)
    assert m.flush() == "</"


def test_earliest_of_several_stops_wins():
    m = StopMatcher(["zz", "b"])
    assert m.push("aabzz") == ("aa", True)


def test_no_stops_passes_everything():
    m = StopMatcher([])
    assert m.push("abc") == ("abc", False)
