"""Valid values of config settings, declared beside each field.

A config dataclass states what a field admits where it declares it::

    lr: float = setting(3e-4, gt=0)
    warmup_steps: int = setting(5000, ge=0)
    activation: str = setting("relu", choices=ACTIVATIONS)

``check_fields(schema, cfg, group)`` then checks every field of a config against its
dataclass: ranges, choices, and that every float is finite (NaN and inf are never a valid
setting). omegaconf already rejects values of the wrong type. What depends on several fields
at once stays in the config's own ``check``.
"""

import math
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Allowed:
    """A range (``ge``/``gt`` below, ``le``/``lt`` above; None: open on that side) or a
    tuple of ``choices``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None

    def admits(self, value) -> bool:
        if self.choices is not None:
            return value in self.choices
        return not ((self.ge is not None and not value >= self.ge)
                    or (self.gt is not None and not value > self.gt)
                    or (self.le is not None and not value <= self.le)
                    or (self.lt is not None and not value < self.lt))

    def __str__(self) -> str:
        if self.choices is not None:
            return f"one of: {', '.join(map(str, self.choices))}"
        low = f"[{self.ge:g}" if self.ge is not None else \
            f"({self.gt:g}" if self.gt is not None else None
        high = f"{self.le:g}]" if self.le is not None else \
            f"{self.lt:g})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if self.ge is not None else '>'} {low[1:]}"
        return f"{'<=' if self.le is not None else '<'} {high[:-1]}"


def setting(default, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, choices=None):
    """A dataclass field with ``default`` and what it admits (pydantic's ge/gt/le/lt, or a
    sequence of ``choices``)."""
    allowed = Allowed(ge, gt, le, lt, None if choices is None else tuple(choices))
    return field(default=default, metadata={"allowed": allowed})


def allowed(schema: type, name: str) -> Allowed | None:
    """What field ``name`` of dataclass ``schema`` admits: its own declaration, else that of
    the nearest base class declaring one (a subclass that only changes a default keeps its
    base's rule); None if none does."""
    for cls in schema.__mro__:
        declared = getattr(cls, "__dataclass_fields__", {}).get(name)
        if declared is not None and "allowed" in declared.metadata:
            return declared.metadata["allowed"]
    return None


def check_fields(schema: type, cfg, group: str) -> str | None:
    """The first field of ``cfg`` (a DictConfig, or an instance of dataclass ``schema``)
    that its declaration does not admit, or a float that is not finite, as one line naming
    the key; else None."""
    for f in fields(schema):
        value = cfg[f.name] if hasattr(cfg, "keys") else getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            return f"{group}.{f.name} must be a finite number, got {value}"
        rule = allowed(schema, f.name)
        if rule is not None and value is not None and not rule.admits(value):
            return f"{group}.{f.name} must be {rule}, got {value!r}"
    return None
