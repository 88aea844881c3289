"""What makes a generated optimizer a drop-in for its ``torch.optim`` counterpart.

The spec says what torch calls things (``hyper momentum = ... as momentum``, ``state m =
zeros as exp_avg``, ``keyword amsgrad = false "..."``); this module turns that into what the
template's constructor, ``load_state_dict`` and ``torch_state_dict`` need:

- the momentum role: the hyper torch's LR schedulers cycle with ``cycle_momentum=True``.
  They write ``group["betas"][0]`` when ``"betas"`` is a default key, else
  ``group["momentum"]``; so the betas are stored as one ``betas`` tuple only when the role is
  beta1, and as separate keys otherwise. A rule that ignores the role hyper under some
  choices of its flag and choice hypers gets a check that refuses a scheduler cycling it.
- state names: torch's state keys mapped to the rule's states on load, back on export.
- keywords: torch's keywords the rule accepts at one value (or refuses, saying what to use).
"""

from __future__ import annotations

import itertools
import json

from ..frontend.names import MOMENTUM_ROLE, beta_run
from ..ir.fold import fold
from ..ir.nodes import HOST, HYPER, REDUCED, STATE, Node, Rule
from .pyexpr import py_number

MAX_CHOICE_COMBINATIONS = 4096  # beyond, the ignored-role check is skipped (the role counts as read)


def beta_tuple(rule: Rule) -> list[str]:
    """beta1..betaN when the rule's number hypers of those names form that run: torch's ``betas``."""
    return beta_run([h.name for h in rule.hypers if h.type == "float"])


def momentum_hyper(rule: Rule) -> str | None:
    """The hyper that plays torch's momentum: the one declared ``as momentum``, else a number
    hyper named momentum, else beta1 of the betas, else none."""
    for h in rule.hypers:
        if h.role == MOMENTUM_ROLE:
            return h.name
    if any(h.name == MOMENTUM_ROLE and h.type == "float" for h in rule.hypers):
        return MOMENTUM_ROLE
    betas = beta_tuple(rule)
    return betas[0] if betas else None


def stored_betas(rule: Rule) -> list[str]:
    """The betas kept as one ``group["betas"]`` tuple: all of them, unless the momentum role is
    another hyper (then a scheduler would cycle betas[0] instead of it)."""
    betas = beta_tuple(rule)
    role = momentum_hyper(rule)
    return betas if betas and role in (None, betas[0]) else []


def split_betas(rule: Rule) -> list[str]:
    """The betas accepted as a ``betas=`` tuple but kept as separate group keys."""
    return [] if stored_betas(rule) else beta_tuple(rule)


# --- where the rule ignores the momentum hyper ---------------------------------------------


def _switches(rule: Rule) -> list[tuple[str, tuple]]:
    """The flag and choice hypers with their possible values."""
    out = []
    for h in rule.hypers:
        if h.type == "bool":
            out.append((h.name, (False, True)))
        elif h.type == "choice":
            out.append((h.name, tuple(h.choices)))
    return out


class _Reads:
    """Whether a rule reads a hyper once its switches have given values: ``where`` branches not
    taken, factors of a product that is 0, are not visited."""

    def __init__(self, rule: Rule, values: dict[str, object]):
        self.rule = rule
        self.values = values
        self.host = dict(rule.host)
        self.memo: dict[int, object] = {}

    def value(self, node: Node):
        """The node's value when the switches decide it (a float or a text), else None."""
        key = id(node)
        if key not in self.memo:
            self.memo[key] = self._value(node)
        return self.memo[key]

    def _value(self, node: Node):
        if node.op == "const":
            return node.attr
        if node.op == "input":
            role, name = node.attr
            if role == HYPER and name in self.values:
                value = self.values[name]
                return float(value) if isinstance(value, bool) else value
            if role == HOST and name in self.host:
                return self.value(self.host[name])
            return None
        if node.op == "where":
            cond = self.value(node.args[0])
            if isinstance(cond, float):
                return self.value(node.args[1] if cond != 0 else node.args[2])
            return None
        args = [self.value(a) for a in node.args]
        if node.op == "mul" and any(a == 0.0 and isinstance(a, float) for a in args):
            return 0.0
        if node.op in ("eq", "ne") and all(isinstance(a, str) for a in args):
            return float((args[0] == args[1]) == (node.op == "eq"))
        if any(a is None or isinstance(a, str) for a in args):
            return None
        return fold(node.op, tuple(args))

    def live_children(self, node: Node) -> list[Node]:
        if node.op == "input" and node.attr[0] == HOST and node.attr[1] in self.host:
            return [self.host[node.attr[1]]]
        if node.op == "where":
            cond = self.value(node.args[0])
            if isinstance(cond, float):
                return [node.args[1] if cond != 0 else node.args[2]]
        if node.op == "mul" and self.value(node) == 0.0:
            return []
        return list(node.args)

    def reads(self, hyper: str) -> bool:
        rule = self.rule
        outputs = dict(rule.outputs)
        reductions = {r.name: r for r in rule.reductions}
        stack = [outputs["p"]] + [n for _, sub in rule.events for n in (sub.output("p"),) if n is not None]
        seen: set[int] = set()
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.op == "input":
                role, name = node.attr
                if role == HYPER and name == hyper:
                    return True
                if role == STATE:
                    decl = rule.state(name)
                    stack += [decl.init] + ([outputs[name]] if name in outputs else [])
                    stack += [n for _, sub in rule.events for n in (sub.output(name),) if n is not None]
                elif role == REDUCED and name in reductions:
                    stack.append(reductions[name].arg)
            stack += self.live_children(node)
        return False


def ignored_momentum(rule: Rule) -> dict | None:
    """Where the rule ignores its momentum hyper: the switches that decide it and the values of
    them under which it is ignored, with values under which it is read; None if it is always read."""
    role = momentum_hyper(rule)
    switches = _switches(rule)
    if role is None or not switches:
        return None
    combos = list(itertools.product(*(values for _, values in switches)))
    if len(combos) > MAX_CHOICE_COMBINATIONS:
        return None
    names = [name for name, _ in switches]
    read = {combo: _Reads(rule, dict(zip(names, combo))).reads(role) for combo in combos}
    if all(read.values()):
        return None
    deciding = [i for i, (_, values) in enumerate(switches) if _decides(read, i, values)]
    ignored = sorted({tuple(combo[i] for i in deciding) for combo, used in read.items() if not used}, key=repr)
    used = [tuple(combo[i] for i in deciding) for combo, read_there in read.items() if read_there]
    return dict(
        hyper=role,
        keys=[names[i] for i in deciding],
        ignored=ignored,
        example=tuple(zip([names[i] for i in deciding], used[0])) if used else (),
    )


def _decides(read: dict[tuple, bool], index: int, values: tuple) -> bool:
    """Whether changing switch ``index`` alone ever changes whether the role is read."""
    for combo, used in read.items():
        for value in values:
            other = combo[:index] + (value,) + combo[index + 1:]
            if read[other] != used:
                return True
    return False


# --- the template's context ------------------------------------------------------------------


def py_literal(value) -> str:
    """A Python literal of a number, bool, None, text, or a tuple or dict of them."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # double-quoted, every character escaped as Python reads it back
    if isinstance(value, tuple):
        return "(" + ", ".join(py_literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    return py_number(value)


def group_defaults(rule: Rule, betas: list[str]) -> list[tuple[str, str]]:
    """(key, Python literal) of every param-group key the rule's class sets, with the spec's
    defaults: what a state_dict saved before a key existed gets for it."""
    out = []
    for h in rule.hypers:
        if h.name in betas:
            if h.name == betas[0]:
                values = ", ".join(py_literal(rule.hyper(b).default) for b in betas)
                out.append(("betas", f"({values}{',' if len(betas) == 1 else ''})"))
            continue
        out.append((h.name, py_literal(h.default)))
    out += [(k.name, py_literal(k.value)) for k in rule.keywords if k.value is not None]
    out += [("maximize", "False"), ("foreach", "None"), ("state_dtype", "None")]
    if rule.events:
        out.append(("train_mode", "True"))
    return out


def context(rule: Rule) -> dict:
    """The template variables of the constructor, checks, loading and export."""
    betas = stored_betas(rule)
    split = split_betas(rule)
    states = [s for s in rule.states]
    ignored = ignored_momentum(rule)
    aliases = [(s.alias, s.name) for s in states if s.alias is not None]
    return dict(
        split_betas=split,
        n_betas=len(betas or split),
        group_defaults=group_defaults(rule, betas),
        valued_keywords=[(k.name, py_literal(k.value), py_literal(k.message)) for k in rule.keywords if k.value is not None],
        refused_keywords=[(k.name, py_literal(k.message)) for k in rule.keywords if k.value is None],
        state_aliases=aliases,
        import_names=py_literal(dict(aliases)),
        export_names=py_literal({ours: theirs for theirs, ours in aliases}),
        state_tuple=_tuple_literal([s.name for s in states]),
        required_tuple=_tuple_literal([s.name for s in states if s.when is None and not s.optional]),
        number_hypers=_tuple_literal([h.name for h in rule.hypers if h.type == "float" and h.name not in betas])
        if any(h.type == "float" and h.name not in betas for h in rule.hypers) else "",
        optional_states=[s.name for s in states if s.when is None and s.optional],
        optional_literal=_tuple_literal([s.name for s in states if s.when is None and s.optional]),
        ignored_momentum=_ignored_literals(ignored) if ignored else None,
    )


def _tuple_literal(values: list) -> str:
    return py_literal(tuple(values))


def _ignored_literals(ignored: dict) -> dict:
    example = ignored["example"]
    return dict(
        hyper=ignored["hyper"],
        switches=ignored["keys"],
        keys_literal=_tuple_literal(ignored["keys"]),
        ignored_literal=_tuple_literal([tuple(combo) for combo in ignored["ignored"]]),
        example_literal=_tuple_literal(list(example)) if example else "()",
    )
