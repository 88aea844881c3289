"""The search space file: the shipped default, validation messages, the stored JSON form."""

from __future__ import annotations

import pytest

from optdsl.search.space import DEFAULT_SPACE, Space, SpaceError, load_space, space_from_dict, space_from_json


def test_default_space_is_shipped_and_matches_the_defaults():
    assert DEFAULT_SPACE.is_file() and DEFAULT_SPACE.parent.parent.name == "search"
    assert load_space() == Space()


def test_json_round_trip():
    space = load_space()
    assert space_from_json(space.to_json()) == space


@pytest.mark.parametrize(
    "data, message",
    [
        ({"vocabulary": {"operands": ["p"]}}, "must include g"),
        ({"vocabulary": {"functions": ["frobnicate"]}}, "unknown function 'frobnicate'"),
        ({"vocabulary": {"functions": ["max/3"]}}, "max takes 1 or 2 arguments"),
        ({"tasks": {"search": ["mnist"]}}, "unknown task 'mnist'"),
        ({"tasks": {"search": ["quadratic"], "heldout": ["quadratic"]}}, "cannot also be a search task"),
        ({"mutation": {"teleport": 1.0}}, "unknown mutation 'teleport'"),
        ({"budget": {"evaluations": 1.5}}, "whole number"),
        ({"budget": {"evals": 10}}, "unknown key(s) evals"),
        ({"warm_start": [{"spec": "sgd", "source": "x"}]}, "exactly one of spec"),
        ({"scoring": {"lr_min": 1.0, "lr_max": 0.1}}, "lr_min <= lr_max"),
    ],
)
def test_bad_spaces_name_the_problem(data, message):
    with pytest.raises(SpaceError) as info:
        space_from_dict(data)
    assert message in str(info.value)


def test_lr_grid_is_log_spaced():
    grid = space_from_dict({"scoring": {"lr_min": 1e-3, "lr_max": 1e-1, "lr_count": 3}}).scoring.lr_grid()
    assert grid == (1e-3, 1e-2, 1e-1)
