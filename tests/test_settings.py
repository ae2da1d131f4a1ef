"""Every setting of every built-in config group refuses bad values with one error line that
names its key: values outside the range its field declares, NaN and inf, the wrong type, an
unknown choice. The table in docs/configuration.md ("Checked values") is generated from the
same cases; ``MBIAPO_UPDATE_DOCS=1 pytest tests/test_settings.py`` rewrites it."""

import os
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from mbiapo.bounds import Allowed, allowed, check_fields, setting
from mbiapo.config import EnvConfig, TrainConfig, compose
from mbiapo.errors import MbiapoError
from mbiapo.planners import PLANNERS
from mbiapo.value import VALUES

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
HEADING = "## Checked values"
NOT_CHECKED_HERE = {
    "env.id": "any gymnasium id; an unknown one fails when the environment is made",
    "train.device": "checked when the agent is built (one line for an unknown device)",
}
OTHER_CASES = [  # settings that are not numbers: (key, selector, value)
    ("train.threads", None, "0"), ("train.threads", None, "many"),
    ("train.act_planner", None, "nope"),
    ("train.act_overrides", "train.act_planner=mppi-seq", "[planner.population=0]"),
    ("train.act_overrides", None, "[planner.population=8]"),
]


def _groups():
    """(group, selector override or None, dataclass) for every built-in config group."""
    yield "env", None, EnvConfig
    yield "train", None, TrainConfig
    for name in PLANNERS.names():
        if not PLANNERS.get(name).plugin:
            yield "planner", f"planner.name={name}", PLANNERS.get(name).config
    for kind in VALUES.names():
        if not VALUES.get(kind).plugin:
            yield "value", f"value.kind={kind}", VALUES.get(kind).config


def _base_type(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def _bad_values(schema, name: str, annotation) -> list[str]:
    """The override values a field must refuse."""
    kind = _base_type(annotation)
    rule = allowed(schema, name)
    bad = []
    if rule is not None and rule.choices is not None:
        bad.append("not_a_choice")
    elif rule is not None:
        if rule.ge is not None:
            bad.append(repr(kind(rule.ge - 1)))
        if rule.gt is not None:
            bad += [repr(kind(rule.gt)), repr(kind(rule.gt - 1))]
        if rule.le is not None:
            bad.append(repr(rule.le + 0.5))
        if rule.lt is not None:
            bad.append(repr(kind(rule.lt)))
    if kind is float:
        bad += ["nan", "inf"]
    if kind in (int, float):
        bad.append("abc")
    if kind is bool:
        bad.append("maybe")
    return list(dict.fromkeys(bad))


def cases():
    """(key, selector, value) for every bad value of every setting that compose checks."""
    yield from OTHER_CASES
    seen = set()
    for group, selector, schema in _groups():
        hints = typing.get_type_hints(schema)
        for f in fields(schema):
            key = f"{group}.{f.name}"
            if key in NOT_CHECKED_HERE or f.name in ("name", "kind"):
                continue
            for value in _bad_values(schema, f.name, hints[f.name]):
                if (key, value, selector) not in seen:
                    seen.add((key, value, selector))
                    yield key, selector, value


CASES = list(cases())


def _error(key: str, selector: str | None, value: str) -> str:
    overrides = ([selector] if selector else []) + [f"{key}={value}"]
    with pytest.raises(MbiapoError) as caught:
        compose("HalfCheetah-v5", overrides=overrides)
    return str(caught.value)


@pytest.mark.parametrize("key,selector,value", CASES,
                         ids=[f"{s or ''}:{k}={v}" for k, s, v in CASES])
def test_a_bad_value_is_one_line_naming_the_key(key, selector, value):
    message = _error(key, selector, value)
    assert "\n" not in message and key in message


def test_every_numeric_setting_is_covered():
    """No int or float setting escapes the cases above (a new field gets checked too)."""
    covered = {key for key, _, _ in CASES}
    for group, _, schema in _groups():
        for name, annotation in typing.get_type_hints(schema).items():
            key = f"{group}.{name}"
            if _base_type(annotation) in (int, float) and key not in NOT_CHECKED_HERE:
                assert key in covered, key


def test_the_rules_admit_the_defaults_and_what_lies_inside():
    required = {"env": {"id": "x"}, "planner": {"name": "x"}, "value": {"kind": "x"}}
    for group, _, schema in _groups():
        assert check_fields(schema, schema(**required.get(group, {})), group) is None
    assert Allowed(gt=0).admits(1e-9) and not Allowed(gt=0).admits(0)
    assert Allowed(ge=0, lt=1).admits(0) and not Allowed(ge=0, lt=1).admits(1)
    assert str(Allowed(ge=0, lt=1)) == "in [0, 1)" and str(Allowed(gt=0)) == "> 0"
    assert str(Allowed(ge=1)) == ">= 1" and str(Allowed(gt=0, le=1)) == "in (0, 1]"


def test_a_subclass_that_changes_a_default_keeps_its_base_rule():
    from dataclasses import dataclass

    from mbiapo.planners.base import PlannerConfig

    @dataclass
    class Mine(PlannerConfig):
        iters: int = 7  # no rule here: PlannerConfig's ">= 1" still holds
        step: float = setting(0.5, gt=0, lt=1)

    assert allowed(Mine, "iters") == Allowed(ge=1)
    assert check_fields(Mine, Mine(name="m", iters=0), "planner") == \
        "planner.iters must be >= 1, got 0"
    assert check_fields(Mine, Mine(name="m", step=1.0), "planner") == \
        "planner.step must be in (0, 1), got 1.0"


def _table() -> str:
    rows = {}
    for key, selector, value in CASES:
        rows.setdefault(key, []).append((selector, value, _error(key, selector, value)))
    lines = [HEADING, "",
             "Generated by `tests/test_settings.py`, which tries every bad value below and "
             "expects one error line naming the key (`MBIAPO_UPDATE_DOCS=1 pytest "
             "tests/test_settings.py` rewrites this table). Each planner and value estimator "
             "row lists the first planner or kind that has the key.", "",
             "| key | bad values tried | error for the first |", "|---|---|---|"]
    for key, tried in rows.items():
        values = ", ".join(f"`{v}`" for v in dict.fromkeys(v for _, v, _ in tried))
        lines.append(f"| `{key}` | {values} | {tried[0][2].replace('|', '/')} |")
    lines += ["", "Checked elsewhere:", ""]
    lines += [f"- `{key}`: {why}" for key, why in NOT_CHECKED_HERE.items()]
    return "\n".join(lines) + "\n"


def test_the_configuration_page_shows_every_checked_value():
    page = DOCS.read_text()
    head, _, _ = page.partition(HEADING)
    expected = head.rstrip("\n") + "\n\n" + _table()
    if os.environ.get("MBIAPO_UPDATE_DOCS"):
        DOCS.write_text(expected)
    assert page == expected, "docs/configuration.md is stale: MBIAPO_UPDATE_DOCS=1 pytest " \
                             "tests/test_settings.py"
