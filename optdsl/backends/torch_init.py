"""Code that creates a parameter's states and checks it can take the rule, run by the
generated ``_init_state`` before a parameter's first update.

* Each state is created the first time its ``when`` condition holds (always, without
  one), in p's shape, one per row or column (``: row`` / ``: col``), or as a 0-d tensor.
* Operations that need a rank get a clear error naming the parameter's shape where
  their guard (``ir.guards``) says they run for it, and a sharded DTensor (FSDP2)
  is refused where a reduction over the whole tensor would see only its shard.
"""

from __future__ import annotations

from ..ir import guards as G
from ..ir.nodes import HOST, HYPER, Node, Rule, StateDecl, postorder, transform
from ..ir.ops import GROUPS, RANK_NEEDED, Kind
from ..ir.schedule import Schedule
from .pyexpr import PyPrinter
from .torch_emit import TorchEmitter

STATE_SHAPE_CODE = {
    "row": "(*param.shape[:-1], 1)",
    "col": "(*param.shape[:-2], 1, param.shape[-1])",
}
STATE_RANK = {"row": 1, "col": 2}
# ops that reduce over several elements: on a DTensor shard they would see the shard alone
_REDUCING = (frozenset(GROUPS["reduce"]) | frozenset(GROUPS["axis_reduce"]) | frozenset(GROUPS["chan_reduce"])
             | frozenset(GROUPS["matrix"]))


def inline_host(node: Node, host: dict[str, Node]) -> Node:
    """``node`` with hoisted host values replaced by their definitions (for code that runs
    where they are not computed, as at state creation)."""
    def fn(n: Node, args):
        if n.op == "input" and n.attr[0] == HOST and n.attr[1] in host:
            return inline_host(host[n.attr[1]], host)
        from ..ir.nodes import rebuild

        return rebuild(n, args)

    return transform([node], fn)[id(node)]


class InitWriter:
    """Writes the body of ``_init_state(group, param, state)`` for one rule."""

    def __init__(self, rule: Rule, helpers: set[str], taken: set[str], shape_lines, hyper_lines):
        self.rule = rule
        self.helpers = helpers
        self.taken = taken
        self.shape_lines = shape_lines
        self.hyper_lines = hyper_lines
        self.host = dict(rule.host)
        self.printer = PyPrinter(rule, helpers=helpers)
        parts = [rule] + [sub for _, sub in rule.events]
        roots = [(n, G.TRUE) for part in parts for _, n in part.outputs]
        roots += [(r.arg, G.TRUE) for r in rule.reductions]
        hosts = {}
        for part in parts:
            hosts.update(dict(part.host))
        self.guards = G.compute(roots, hosts)
        self.hosts = hosts
        self.printed: list[Node] = []  # conditions the checks print: what they read

    def condition(self, node: Node) -> str:
        node = inline_host(node, self.hosts)
        self.printed.append(node)
        return self.printer.condition(node)

    def guard_text(self, guard) -> str:
        return G.condition_text(guard, self.guards, self.condition)

    def lines(self) -> tuple[list[str], list[str], list[str]]:
        """(what the other lines read, checks run once before a parameter's first state,
        lines creating each state)."""
        checks = self._rank_checks() + self._shard_check()
        creation: list[str] = []
        for s in self.rule.states:
            creation += self._create(s)
        reads = self._reads(checks, creation)
        setup = self.hyper_lines(self.rule, reads["hypers"])
        if "p" in reads["inputs"]:
            setup.append("p = param")
        if "g" in reads["inputs"]:
            setup.append('g = -param.grad if group["maximize"] else param.grad')
        if "t" in reads["inputs"]:
            setup.append("t = 1.0  # states start on the first step")
        setup += self.shape_lines(reads["shapes"], "param")
        return setup, checks, creation

    def _reads(self, checks, creation) -> dict[str, set[str]]:
        roots = [s.init for s in self.rule.states] + [s.when for s in self.rule.states if s.when is not None]
        roots += self.printed
        nodes = list(postorder(roots))
        return {
            "hypers": {n.name for n in nodes if n.op == "input" and n.attr[0] == HYPER},
            "inputs": {n.name for n in nodes if n.op == "input"},
            "shapes": {n.op for n in nodes if n.op in GROUPS["shape"]},
        }

    # --- states ------------------------------------------------------------------------------
    def _create(self, s: StateDecl) -> list[str]:
        test = f'"{s.name}" not in state'
        if s.when is not None:
            test += f" and {_paren(self.printer.condition(s.when))}"
        body = self._value_lines(s)
        return [f"if {test}:"] + ["    " + line for line in body]

    def _value_lines(self, s: StateDecl) -> list[str]:
        init = s.init
        key = f'state["{s.name}"]'
        if s.shape in STATE_SHAPE_CODE:
            shape = STATE_SHAPE_CODE[s.shape]
            if init.kind <= Kind.SHAPE:
                # new_full, not torch.full: a DTensor parameter gets a DTensor state (same mesh)
                return [f"{key} = param.new_full({shape}, float({self.printer.expr(init)}), dtype=dtype)"]
            value, lines = self._tensor(init)
            return lines + [f"{key} = torch.broadcast_to({value}, {shape}).to(dtype, copy=True)"]
        if s.shape == "tensor" and init.op == "const" and init.attr == 0.0:
            return [f"{key} = torch.zeros_like(param, dtype=dtype, memory_format=torch.preserve_format)"]
        if s.shape == "tensor" and init.kind <= Kind.SHAPE:
            return [f"{key} = torch.full_like(param, {self.printer.expr(init)}, dtype=dtype, "
                    "memory_format=torch.preserve_format)"]
        if s.on_host:
            return [f"{key} = torch.tensor(float({self.printer.expr(init)}), dtype=dtype)"]
        if init.kind <= Kind.SHAPE:
            return [f"{key} = torch.tensor(float({self.printer.expr(init)}), device=param.device)"]
        value, lines = self._tensor(init)
        if s.shape == "tensor":
            return lines + [f"{key} = torch.broadcast_to({value}, param.shape).to(dtype, copy=True)"]
        return lines + [f"{key} = {value}.to(torch.float32, copy=True)"]

    def _tensor(self, node: Node) -> tuple[str, list[str]]:
        emitter = TorchEmitter(self.rule, Schedule([], {}, {}), foreach=False, taken=set(self.taken), indent="")
        emitter.guards = G.Guards({}, {}, {})
        value = emitter.value(node)
        self.helpers |= emitter.host_printer.helpers
        return value.code, list(emitter.lines)

    # --- checks ------------------------------------------------------------------------------
    def _needs(self) -> dict[tuple[int, G.Guard], list[str]]:
        """(rank, where they run) -> the operations needing that rank which run exactly there:
        one check each, so that its message names only what applies to the parameter."""
        out: dict[tuple[int, G.Guard], list[str]] = {}

        def add(rank: int, guard, what: str) -> None:
            names = out.setdefault((rank, guard), [])
            names += [what] if what not in names else []

        for node in self._nodes():
            need = RANK_NEEDED.get(node.op)
            if need is not None:
                add(need, self.guards[node], "@" if node.op == "matmul" else node.op)
        for s in self.rule.states:
            if s.shape in STATE_RANK:
                guard = self.guards.condition_of(s.when) if s.when is not None else G.TRUE
                add(STATE_RANK[s.shape], guard, f"{s.shape} state {s.name}")
        return out

    def _nodes(self) -> list[Node]:
        parts = [self.rule] + [sub for _, sub in self.rule.events]
        roots = [n for part in parts for _, n in part.outputs] + [r.arg for r in self.rule.reductions]
        return list(postorder(roots))

    def _rank_checks(self) -> list[str]:
        lines = []
        needs = self._needs()
        covered: set[int] = set()  # ranks with an unconditional check: the others never raise
        for rank, guard in sorted(needs, key=lambda key: (key[0], key[1] != G.TRUE)):
            names = needs[(rank, guard)]
            if rank in covered or min(G.reachable_ranks(guard), default=rank) >= rank:
                continue  # none, or only where ndim says the parameter has the rank
            if guard == G.TRUE:
                covered.add(rank)
            test = f"param.dim() < {rank}"
            if guard != G.TRUE:
                text = self.guard_text(guard)
                test = f"{text if len(guard) == 1 else f'({text})'} and {test}"
            plural = "s" if rank > 1 else ""
            lines += [
                f"if {test}:",
                f'    raise ValueError(f"{self.rule.name} applies {", ".join(names)} to this parameter, which '
                f'needs at least {rank} dimension{plural}; it has shape {{tuple(param.shape)}}")',
            ]
        return lines

    def _shard_check(self) -> list[str]:
        guard = G.FALSE
        names: list[str] = []
        for node in self._nodes():
            if node.op in _REDUCING:
                guard = G.disjoin(guard, self.guards[node])
                what = "@" if node.op == "matmul" else node.op
                names += [what] if what not in names else []
        for r in self.rule.reductions:
            guard = G.TRUE
            names += [r.op] if r.op not in names else []
        for s in self.rule.states:
            if s.shape in STATE_RANK:
                guard = G.disjoin(guard, self.guards.condition_of(s.when) if s.when is not None else G.TRUE)
                names.append(f"{s.shape} state {s.name}")
        if not guard:
            return []
        self.helpers.add("_shard_placements")
        test = "_shard_placements(param) is not None"
        if guard != G.TRUE:
            text = self.guard_text(guard)
            test += f" and {text if len(guard) == 1 else f'({text})'}"
        return [
            f"if {test}:",
            f'    raise ValueError(f"{self.rule.name} reduces over whole tensors ({", ".join(names)}), but this '
            f'parameter of shape {{tuple(param.shape)}} is a DTensor shard (placements {{_shard_placements(param)}}): '
            f'the reduction would see this shard alone; give {self.rule.name} unsharded (replicated) parameters")',
        ]


def _paren(text: str) -> str:
    return text if text.replace("_", "").replace(".", "").isalnum() else f"({text})"
