"""The models a server can serve and holds: where files are found and what
they are called (discovery.py, names.py, catalog.py), per-model settings
(settings.py) and what each loads with and holds (plans.py),
memory admission as a pure policy (admission.py), threads per model
(threads.py), the pool of resident workers (pool.py), counters
(metrics.py), and State, what handlers share."""
