"""HTTP: the transport (transport.py, connection.py), the policy a request's
head is checked by (policy.py), the application a request is routed through
(app.py), its request and response records (exchange.py) and its error
answers (errors.py). Nothing here knows a dialect or a model."""
