"""``require CONDITION "MESSAGE"``: conditions across hypers, checked per param group.

The regression: torch.optim.SGD refuses ``nesterov=True`` without a momentum or with
dampening ("Nesterov momentum requires a momentum and zero dampening"); the generated
SGD accepted both and ran another rule.
"""

from __future__ import annotations

import pytest
import torch

import optdsl
from optdsl.compiler import check, from_text

SPEC = '''optimizer Req
hyper lr = 1e-3 in [0, inf)
hyper a = 1
hyper b = 2
hyper flag = false
require where(flag, a < b, true) "with flag, a must be below b"
p = p - lr * a * g
'''


def _param():
    return [torch.nn.Parameter(torch.randn(3))]


@pytest.mark.parametrize("kwargs", [dict(nesterov=True), dict(nesterov=True, momentum=0.9, dampening=0.5)])
def test_sgd_refuses_nesterov_like_torch(kwargs):
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        torch.optim.SGD(_param(), **kwargs)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        optdsl.load("sgd")(_param(), **kwargs)


def test_sgd_nesterov_with_momentum_is_accepted():
    optdsl.load("sgd")(_param(), nesterov=True, momentum=0.9)


def test_requirement_checked_per_group():
    cls = optdsl.load(source=SPEC)
    opt = cls(_param(), a=3, b=2)  # flag off: no requirement
    with pytest.raises(ValueError, match="with flag, a must be below b"):
        opt.add_param_group({"params": _param(), "flag": True})
    with pytest.raises(ValueError, match="with flag, a must be below b"):
        cls(_param(), a=3, b=2, flag=True)
    cls(_param(), a=1, b=2, flag=True)


def test_requirement_round_trips_through_fmt():
    text = optdsl.format_spec(source=SPEC)
    assert 'require where(flag, a < b, true) "with flag, a must be below b"' in text
    assert optdsl.format_spec(source=text) == text


def test_requirement_does_not_change_the_hash():
    without = "\n".join(line for line in SPEC.splitlines() if not line.startswith("require"))
    assert optdsl.rule_hash(source=SPEC) == optdsl.rule_hash(source=without)


@pytest.mark.parametrize("condition,message", [
    ("g > 0", "a requirement reads hypers only, not 'g'"),
    ("numel > 1", "a requirement reads hypers only, not 'numel'"),
    ("lrr > 0", "unknown name 'lrr'"),
])
def test_requirement_reads_hypers_only(condition, message):
    text = SPEC.replace("where(flag, a < b, true)", condition)
    with pytest.raises(optdsl.SpecError) as info:
        check(from_text(text))
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.message == message
    assert diagnostic.span.line == 6


def test_requirement_needs_a_message():
    with pytest.raises(optdsl.SpecError, match="needs a message"):
        check(from_text(SPEC.replace('"with flag, a must be below b"', '""')))


def test_a_variant_cannot_require(tmp_path):
    variant = tmp_path / "v.opt"
    variant.write_text('variant V on u\nhyper k = 1\nrequire k > 0 "k must be positive"\nu = k * u\n')
    with pytest.raises(optdsl.SpecError, match="cannot require a condition"):
        optdsl.compile_spec("adamw", variants=[str(variant)])
