"""The README stays a page: at most 160 lines (issue 38 held it there), and
its two commands are the Makefile's."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_is_at_most_160_lines_and_names_its_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 160
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert f"make {target}" in text and f"\n{target}:" in make
