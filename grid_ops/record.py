"""Plain-data classes for the quick path, without importing ``dataclasses``.

``dataclasses`` pulls in inspect, ast, dis and tokenize: about 25 ms on this box, more
than a warm ``grid-ops health`` spends on the nodes. The resolved model and the run
results are plain records that the quick path builds on every call, so they use this
small stand-in: type checkers see ``dataclasses.dataclass`` (so fields are typed and
checked), the interpreter gets an ``__init__`` (positional or by name, defaults and
``factory`` defaults), ``__eq__`` and ``__repr__`` built from the class's annotations.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from dataclasses import asdict as as_dict
    from dataclasses import dataclass as record
    from dataclasses import field
    from dataclasses import replace as replace
    from typing import TypeVar

    T = TypeVar("T")

    def factory(make: Callable[[], T]) -> T:
        """A default made anew for each record (``list``, ``dict``)."""
        result: T = field(default_factory=make)
        return result

else:

    class _Factory:
        __slots__ = ("make",)

        def __init__(self, make):
            self.make = make

    def factory(make):
        return _Factory(make)

    _MISSING = object()

    def record(cls):
        annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - no inspect here
        names = [n for n in annotations if not n.startswith("_")]
        defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
        for name in defaults:
            delattr(cls, name)  # instances hold the values; the class keeps no shared copy

        def __init__(self, *args, **kwargs):
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__} takes {len(names)} fields")
            values = dict(zip(names, args, strict=False))  # fewer args: defaults follow
            for key, value in kwargs.items():
                if key not in names or key in values:
                    raise TypeError(f"{cls.__name__}: unexpected or repeated field {key!r}")
                values[key] = value
            for name in names:
                if name not in values:
                    default = defaults.get(name, _MISSING)
                    if default is _MISSING:
                        raise TypeError(f"{cls.__name__}: field {name!r} is required")
                    values[name] = default.make() if isinstance(default, _Factory) else default
                object.__setattr__(self, name, values[name])

        def __eq__(self, other):
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        def __repr__(self):
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
            return f"{cls.__name__}({inner})"

        cls.__init__ = __init__
        cls.__eq__ = __eq__
        cls.__hash__ = None
        cls.__repr__ = __repr__
        cls.__record_fields__ = tuple(names)
        return cls

    def _plain(value):
        if hasattr(value, "__record_fields__"):
            return {n: _plain(getattr(value, n)) for n in value.__record_fields__}
        if isinstance(value, (list, tuple)):
            return type(value)(_plain(v) for v in value)
        if isinstance(value, dict):
            return {k: _plain(v) for k, v in value.items()}
        return value

    def as_dict(value):
        """A record as a dict, records inside it too."""
        return _plain(value)

    def replace(value, **changes):
        """A copy of the record with ``changes``."""
        fields = {n: getattr(value, n) for n in value.__record_fields__}
        fields.update(changes)
        return value.__class__(**fields)


__all__ = ["as_dict", "factory", "record", "replace"]
