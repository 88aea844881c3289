"""Order a rule's per-element work as sequential statements.

A rule is a graph over the *old* values of ``p`` and the states; code runs
statements one after another and updates buffers in place. The schedule
decides which values become named temporaries (those used more than once),
the order of statements, and which outputs must be computed into a temporary
and written back at the end (when an old value is still needed after the new
one exists, e.g. ``a, b = b, a``).

Used by the text printer (``optdsl explain``) and by every backend, so what
``explain`` shows is the order the generated code runs in.
"""

from __future__ import annotations

from dataclasses import dataclass

from .nodes import PARAM, STATE, Node, Rule, fresh_name, postorder, use_counts
from .ops import Kind


@dataclass(frozen=True)
class Statement:
    kind: str  # "temp": name = node | "write": buffer <- node | "copy": buffer <- temp `name`
    name: str  # the temporary's name, or the buffer written
    node: Node
    buffer: str | None = None  # for "copy": the buffer written from temp `name`


@dataclass
class Schedule:
    statements: list[Statement]
    names: dict[int, str]  # materialized node -> the name that holds it once computed
    uses: dict[int, int]  # how many statements read each materialized node


def _old_reads(node: Node, materialized: dict[int, str]) -> tuple[set[str], set[int]]:
    """Buffers whose old value ``node`` reads, and materialized nodes it references."""
    buffers: set[str] = set()
    refs: set[int] = set()
    stack = [node]
    seen: set[int] = set()
    first = True
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if not first and id(n) in materialized:
            refs.add(id(n))
            continue
        first = False
        if n.op == "input" and n.role in (PARAM, STATE):
            buffers.add(n.name)
        stack.extend(n.args)
    return buffers, refs


def schedule(rule: Rule, taken: set[str] | None = None) -> Schedule:
    outputs = list(rule.outputs)
    roots = [n for _, n in outputs]
    counts = use_counts(roots)
    taken = set(taken or ()) | {n for n, _ in rule.host} | {h.name for h in rule.hypers}
    taken |= {s.name for s in rule.states} | {"p", "g", "t"}
    order = {id(n): i for i, n in enumerate(postorder(roots))}

    materialized: dict[int, str] = {}
    writer: dict[int, str] = {}  # node -> buffer that will hold it
    for name, node in outputs:
        if node.op == "input" or id(node) in writer:
            continue
        writer[id(node)] = name
        materialized[id(node)] = name
    temps: list[Node] = []
    for node in postorder(roots):
        if node.op in ("input", "const") or not node.args or id(node) in materialized:
            continue
        if counts.get(id(node), 0) > 1 and node.kind >= Kind.SCALAR:
            materialized[id(node)] = fresh_name(node.hint or "tmp", taken)
            temps.append(node)

    # units: temps and writes
    units: list[tuple[str, str, Node]] = [("temp", materialized[id(n)], n) for n in temps]
    units += [("write", name, node) for name, node in outputs]
    deferred: set[str] = set()
    while True:
        ordered = _toposort(units, materialized, writer, deferred, order)
        if isinstance(ordered, list):
            break
        deferred.add(ordered)  # a write that must wait: compute into a temp, copy at the end
        node = dict(outputs)[ordered]
        if writer.get(id(node)) == ordered:
            materialized[id(node)] = fresh_name(f"{ordered}_new", taken)

    statements: list[Statement] = []
    tail: list[Statement] = []
    for kind, name, node in ordered:
        if kind == "write" and name in deferred:
            owns = node.op != "input" and writer.get(id(node)) == name
            tmp = materialized[id(node)] if owns else fresh_name(f"{name}_new", taken)
            statements.append(Statement("temp", tmp, node))
            tail.append(Statement("copy", tmp, node, name))
        else:
            statements.append(Statement(kind, name, node))
    statements += tail

    uses: dict[int, int] = {}
    for st in statements:
        if st.kind == "copy":
            continue
        _, refs = _old_reads(st.node, materialized)
        for r in refs:
            uses[r] = uses.get(r, 0) + 1
    return Schedule(statements, materialized, uses)


def _toposort(units, materialized, writer, deferred, order):
    """A valid order of ``units``, or the name of a write to defer to break a cycle."""
    n = len(units)
    deps: list[set[int]] = [set() for _ in range(n)]
    produces: dict[int, int] = {}
    writes: dict[str, int] = {}
    for i, (kind, name, node) in enumerate(units):
        if kind == "temp" or name in deferred:
            produces[id(node)] = i
        else:
            if writer.get(id(node)) == name:
                produces[id(node)] = i
            writes[name] = i
    for i, (kind, name, node) in enumerate(units):
        buffers, refs = _old_reads(node, materialized)
        for r in refs:
            j = produces.get(r)
            if j is not None and j != i:
                deps[i].add(j)
        for b in buffers:
            j = writes.get(b)
            if j is not None and j != i:
                deps[j].add(i)  # the write of b waits for every reader of old b
    done: list[int] = []
    placed: set[int] = set()
    while len(done) < n:
        ready = [i for i in range(n) if i not in placed and deps[i] <= placed]
        if not ready:
            stuck = [units[i][1] for i in range(n) if i not in placed and units[i][0] == "write" and units[i][1] not in deferred]
            return sorted(stuck, key=lambda name: [u[1] for u in units].index(name))[-1]
        best = min(ready, key=lambda i: (order.get(id(units[i][2]), 0), i))
        placed.add(best)
        done.append(best)
    return [units[i] for i in done]

