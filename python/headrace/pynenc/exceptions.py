"""How ``HeadraceStateBackend`` stores an exception so that it comes back as itself.

pynenc's own errors keep pynenc's format (``PynencError.to_json``), which rebuilds every one of
them. Any other exception is stored in pynenc's format too (so pynenc's own readers still
understand it) plus a ``headrace`` part: headrace's exception record (``headrace.state``'s
``exception_record``, the one owner of that encoding: class, JSON args, message, traceback)
and its ``state``, the ``args`` and instance attributes serialized with the app's client data
store (so non-JSON arguments and custom attributes survive). Reading rebuilds the class without
calling ``__init__`` (``cls.__new__`` + ``args`` + attributes), so exceptions whose constructor
takes keyword-only or computed arguments come back with the same class, args and attributes;
when the class cannot be imported, headrace's own rule applies (``StoredException``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pynenc.exceptions import PynencError

from headrace.state import _attach_traceback, _rebuild, _resolve_class, exception_record

if TYPE_CHECKING:
    from pynenc.app import Pynenc

_RECORD_FIELDS = ("type_module", "type_qualname", "args", "message", "traceback")


def serialize_exception(app: Pynenc, exception: Exception) -> str:
    """pynenc's stored form of ``exception``, with headrace's rebuild data for non-pynenc errors."""
    if isinstance(exception, PynencError):
        return json.dumps(
            {"error_name": type(exception).__name__, "pynenc_error": True, "error_data": exception.to_json()}
        )
    store = app.client_data_store
    record: dict[str, Any] = dict(zip(_RECORD_FIELDS, exception_record(exception), strict=True))
    record["state"] = store.serialize({"args": list(exception.args), "attributes": dict(vars(exception))})
    return json.dumps(
        {
            "error_name": type(exception).__name__,
            "pynenc_error": False,
            "error_data": store.serialize(exception),
            "headrace": record,
        }
    )


def deserialize_exception(app: Pynenc, serialized: str) -> Exception:
    """The exception :func:`serialize_exception` (or pynenc itself) stored."""
    data: dict[str, Any] = json.loads(serialized)
    if data["pynenc_error"]:
        rebuilt: Exception = PynencError.from_json(data["error_name"], data["error_data"])
        return rebuilt
    record = data.get("headrace")
    if record is None:  # written by pynenc's own backends
        decoded: Exception = app.client_data_store.deserialize(data["error_data"])
        return decoded
    cls = _resolve_class(record["type_module"], record["type_qualname"])
    if cls is not None and issubclass(cls, Exception):
        state = app.client_data_store.deserialize(record["state"])
        exception = cls.__new__(cls)
        exception.args = tuple(state["args"])
        exception.__dict__.update(state["attributes"])
        _attach_traceback(exception, record["traceback"])
        return exception
    fallback = _rebuild(*(record[field] for field in _RECORD_FIELDS))
    return fallback if isinstance(fallback, Exception) else Exception(str(fallback))
