"""`python -m shimmy_py.serving.worker FD`: the model worker process (process.py)."""
from .process import _entry

_entry()
