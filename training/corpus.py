"""The training text of the stdlib model: the running Python's standard
library source, a fixed rule for which files, a fixed held-out set.

Training files: every `.py` under the standard library directory
(`sysconfig`'s `stdlib`), sorted by relative path, except the test suites
(`test/`, `tests/`, `*/test_*.py`), `idlelib/`, `lib2to3/`, `site-packages/`,
and the held-out files below. The held-out files are Python the model never
sees; their copies (at `training/heldout/`, from CPython 3.11.7, PSF licence)
are what the perplexity figures and tests read, so that they do not depend on
the Python a later machine runs.
"""
from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = HERE / "stdlib-moe.gguf"          # what training/train.py writes; committed
HELDOUT = ("textwrap.py", "shlex.py", "fractions.py", "graphlib.py")
HELDOUT_DIR = HERE / "heldout"
SKIP_PARTS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "__pycache__"}


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def training_files(root: Path | None = None) -> list[Path]:
    """The training files, in their fixed order."""
    root = root or stdlib_dir()
    out = []
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root)
        if SKIP_PARTS & set(rel.parts[:-1]) or rel.name.startswith("test_") or rel.as_posix() in HELDOUT:
            continue
        out.append(path)
    return out


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def heldout_text() -> str:
    """The held-out files, concatenated in HELDOUT's order (the copies in training/heldout/)."""
    return "".join(read(HELDOUT_DIR / name) for name in HELDOUT)


def digest(paths: list[Path]) -> str:
    """sha256 of the files' bytes in order: the log records it, so a rerun can tell it trained on the same text."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def copy_heldout(root: Path | None = None) -> None:
    """Copies the held-out files of the running Python into training/heldout/."""
    root = root or stdlib_dir()
    HELDOUT_DIR.mkdir(exist_ok=True)
    for name in HELDOUT:
        (HELDOUT_DIR / name).write_bytes((root / name).read_bytes())
