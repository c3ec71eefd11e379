"""The model worker: a process of its own per resident model (process.py,
started as `python -m shimmy_py.serving.worker`), its supervisor on the
server's side (supervisor.py), the messages between them (messages.py) and
the liveness decision (watchdog.py). It imports nothing of HTTP or dialects."""
