"""Duplicate keys and cheap filters on programs written in different ways."""

from __future__ import annotations

import pytest

from optdsl.compiler import lower, resolve
from optdsl.passes.sympy_simplify import canonical_form, is_sign_momentum
from optdsl.search.dedupe import Deduper, fingerprint, lower_text
from optdsl.search.probe import screen
from search_support import EQUAL_TO_SIGNUM, HEADER, SIGNUM

DIFFERENT = {
    "sgd_momentum": HEADER + "state m = zeros\n\nm = 0.9 * m + g\np = p - lr * m\n",
    "other_beta": HEADER + "state m = zeros\n\nm = 0.8 * m + g\np = p - lr * sign(m)\n",
    "lion": HEADER + "state m = zeros\n\nc = 0.9 * m + 0.1 * g\np = p - lr * sign(c)\nm = 0.99 * m + 0.01 * g\n",
}


@pytest.mark.parametrize("name", sorted(EQUAL_TO_SIGNUM))
def test_equal_programs_share_a_key(name):
    deduper = Deduper()
    deduper.add(fingerprint(SIGNUM), 1)
    found = deduper.find(fingerprint(EQUAL_TO_SIGNUM[name]))
    assert found is not None and found[1] == 1


def test_sympy_form_alone_equates_sign_spellings():
    forms = {canonical_form(lower_text(t)) for t in (SIGNUM, EQUAL_TO_SIGNUM["sqrt_spelling"], EQUAL_TO_SIGNUM["abs_spelling"])}
    assert len(forms) == 1


def test_numeric_probe_alone_equates_renamed_and_reordered():
    hashes = {fingerprint(t).numeric for t in (SIGNUM, EQUAL_TO_SIGNUM["renamed_state"], EQUAL_TO_SIGNUM["reordered_sum"])}
    assert len(hashes) == 1


@pytest.mark.parametrize("name", sorted(DIFFERENT))
def test_different_programs_get_no_key_in_common(name):
    deduper = Deduper()
    deduper.add(fingerprint(SIGNUM), 1)
    assert deduper.find(fingerprint(DIFFERENT[name])) is None


@pytest.mark.parametrize(
    "body, reason",
    [
        ("p = p\n", "no_update"),
        ("p = p - lr\n", "ignores_g"),
        ("p = p - lr * p\n", "ignores_g"),
        ("p = p + lr * g\n", "no_descent"),
        ("p = p * (lr * g)\n", "no_descent"),  # collapsing p to 0 is no descent: the sphere is off-centre
        ("p = p - lr * log(g - g)\n", "not_finite"),
        ("p = p - lr * g\n", None),
    ],
)
def test_screen(body, reason):
    assert screen(lower_text(HEADER + body)) == reason


@pytest.mark.parametrize(
    "text, expected",
    [
        (resolve("lion").text, True),
        (SIGNUM, True),
        (EQUAL_TO_SIGNUM["sqrt_spelling"], True),
        (HEADER + "state m = zeros\n\nc = 0.9 * m + 0.1 * g\np = p * 0.99 - 0.3 * lr * c / abs(c)\nm = 0.99 * m + 0.01 * g\n", True),
        (HEADER + "state b = zeros\n\nb = where(t == 1, g, 0.9 * b + 1.2 * g)\np = p - lr * sign(b)\n", True),
        (HEADER + "state b = zeros\n\nb = where(b > 1, g, 0.9 * b + g)\np = p - lr * sign(b)\n", False),
        (HEADER + "state m = zeros\n\nm = 0.9 * m + g\np = p - lr * (sign(m) + 0.5)\n", False),
        (resolve("adamw").text, False),
        (resolve("sgd").text, False),
        (HEADER + "p = p - lr * sign(g)\n", False),
        (HEADER + "state m = zeros\n\nm = 0.9 * m + g * g\np = p - lr * sign(m + g)\n", False),
        (HEADER + "state m = zeros\n\nm = 0.9 * m + g\np = p - lr * g * sign(m)\n", False),
    ],
)
def test_sign_momentum_family(text, expected):
    from optdsl.compiler import from_text

    rule, _ = lower(from_text(text))
    assert is_sign_momentum(rule) is expected
