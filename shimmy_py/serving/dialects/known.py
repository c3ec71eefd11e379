"""The one check every dialect makes of a JSON object it is sent: an object
holding only fields the route knows. A field it does not know is a 400
naming it: a feature this server does not implement must not turn into an
answer that is not what was asked."""
from __future__ import annotations

from typing import Any, Collection

from ..http.errors import bad


def known_fields(value: Any, known: Collection[str], where: str | None = None, route: str | None = None) -> dict:
    """`value` if it is a JSON object of known fields; `where`: the object's
    place in the body (None: the body itself), `route`: named in the error."""
    if not isinstance(value, dict):
        raise bad(f"{where or 'the request body'} must be a JSON object")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise bad(f"{where + ': ' if where else ''}unsupported field {unknown[0]!r}{' for ' + route if route else ''}: "
                  "this server does not implement it", unknown[0])
    return value
