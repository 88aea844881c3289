"""The search space file (TOML): vocabulary, warm starts, tasks, scoring, budget, seed.

``load_space(path)`` reads and validates a space file; every problem is a
``SpaceError`` naming the key. The effective space (after command-line
overrides) is stored in the search database as JSON, so ``--resume`` needs
no file. See ``docs/search.md`` for every key; ``spaces/default.toml`` is the
shipped example.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..frontend.names import FUNCTIONS

DEFAULT_SPACE = Path(__file__).resolve().parent / "spaces" / "default.toml"
BINARY_OPERATORS = ("+", "-", "*", "/", "^")
GIVEN_OPERANDS = ("g", "p", "t", "lr")


class SpaceError(ValueError):
    """A search space file that cannot be used (the message names the key)."""


@dataclass(frozen=True)
class Vocabulary:
    operands: tuple[str, ...] = ("g", "p")
    constants: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999, 1.0, 2.0, 1e-8)
    functions: tuple[str, ...] = (
        "+", "-", "*", "/", "sign", "sqrt", "abs", "square", "lerp", "max", "min", "tanh", "exp", "rsqrt",
    )
    state_slots: tuple[str, ...] = ("m", "v", "w")
    variants: tuple[str, ...] = ("cautious", "grams", "cmgup", "orthograd", "clip_norm", "adaptive_braking")
    max_statements: int = 8
    max_expression_size: int = 12


@dataclass(frozen=True)
class WarmStart:
    spec: str | None = None  # a built-in name or a .opt path
    source: str | None = None  # or the spec text itself
    hypers: tuple[tuple[str, float | bool | str], ...] = ()  # values inlined as constants


@dataclass(frozen=True)
class Evolution:
    population: int = 64
    tournament: int = 8
    max_mutations: int = 3
    restart_after: int = 400  # evaluations without a better best before a restart; 0 = never
    mutation_weights: tuple[tuple[str, float], ...] = (
        ("insert", 1.0), ("delete", 1.0), ("change_argument", 1.0), ("change_function", 0.5), ("perturb_constant", 1.0),
        ("apply_variant", 0.3),
    )


@dataclass(frozen=True)
class Scoring:
    search_tasks: tuple[str, ...] = ("quadratic", "rosenbrock", "logreg", "mlp")
    heldout_tasks: tuple[str, ...] = ("digits", "charlm")
    lr_min: float = 1e-4
    lr_max: float = 1.0
    lr_count: int = 9
    fidelities: int = 2  # fidelity 0 for every candidate, 1.. for the funnel
    promote_fraction: float = 0.1
    heldout_top: int = 10
    heldout_fidelity: int = 1
    task_seed: int = 0

    def lr_grid(self) -> tuple[float, ...]:
        if self.lr_count == 1:
            return (self.lr_min,)
        step = (math.log10(self.lr_max) - math.log10(self.lr_min)) / (self.lr_count - 1)
        return tuple(float(f"{10 ** (math.log10(self.lr_min) + i * step):.6g}") for i in range(self.lr_count))


@dataclass(frozen=True)
class Budget:
    evaluations: int = 200  # candidates trained at fidelity 0; 0 = no limit
    minutes: float = 0.0  # wall time of the search phase; 0 = no limit

    def unlimited(self) -> bool:
        return self.evaluations <= 0 and self.minutes <= 0


@dataclass(frozen=True)
class Execution:
    workers: int = 0  # 0 = every core
    timeout_s: float = 120.0  # per evaluation job (scaled by 3^fidelity)


@dataclass(frozen=True)
class Space:
    seed: int = 0
    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    warm_starts: tuple[WarmStart, ...] = (WarmStart(spec="sgd", hypers=(("momentum", 0.9),)),)
    evolution: Evolution = field(default_factory=Evolution)
    scoring: Scoring = field(default_factory=Scoring)
    budget: Budget = field(default_factory=Budget)
    execution: Execution = field(default_factory=Execution)

    def replace(self, **changes) -> Space:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


# --- reading ---------------------------------------------------------------------------


def load_space(path: str | os.PathLike | None = None) -> Space:
    """Read and validate a space file (the shipped default when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_SPACE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpaceError(f"no search space file at {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{path}: {exc}") from None
    return space_from_dict(data, str(path))


def space_from_dict(data: dict, where: str = "<space>") -> Space:
    known = {"seed", "vocabulary", "warm_start", "evolution", "mutation", "tasks", "scoring", "budget", "execution"}
    _no_unknown(data, known, where)
    base = Space()
    space = Space(
        seed=int(data.get("seed", base.seed)),
        vocabulary=_section(Vocabulary, data.get("vocabulary", {}), f"{where} [vocabulary]"),
        warm_starts=tuple(_warm_start(w, f"{where} [[warm_start]] #{i + 1}") for i, w in enumerate(data.get("warm_start", [])))
        or base.warm_starts,
        evolution=_evolution(data.get("evolution", {}), data.get("mutation"), where),
        scoring=_scoring(data.get("tasks", {}), data.get("scoring", {}), where),
        budget=_section(Budget, data.get("budget", {}), f"{where} [budget]"),
        execution=_section(Execution, data.get("execution", {}), f"{where} [execution]"),
    )
    validate(space)
    return space


def space_from_json(text: str) -> Space:
    """The space stored in a search database (see ``Space.to_json``)."""
    d = json.loads(text)
    return Space(
        seed=d["seed"],
        vocabulary=Vocabulary(**_tuples(d["vocabulary"])),
        warm_starts=tuple(WarmStart(w["spec"], w["source"], tuple(tuple(h) for h in w["hypers"])) for w in d["warm_starts"]),
        evolution=Evolution(**{**_tuples(d["evolution"]), "mutation_weights": tuple(tuple(x) for x in d["evolution"]["mutation_weights"])}),
        scoring=Scoring(**_tuples(d["scoring"])),
        budget=Budget(**d["budget"]),
        execution=Execution(**d["execution"]),
    )


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def _no_unknown(data: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _section(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise SpaceError(f"{where}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _no_unknown(data, set(fields), where)
    values = {}
    defaults = cls()
    for key, value in data.items():
        default = getattr(defaults, key)
        values[key] = _coerce(value, default, f"{where} {key}")
    return cls(**values)


def _coerce(value, default, where: str):
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise SpaceError(f"{where}: expected a list")
        kind = type(default[0]) if default else str
        return tuple(_coerce(v, kind(), where) for v in value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpaceError(f"{where}: expected true or false")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"{where}: expected a number")
        if isinstance(default, int) and value != int(value):
            raise SpaceError(f"{where}: expected a whole number")
        return type(default)(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise SpaceError(f"{where}: expected text")
        return value
    raise SpaceError(f"{where}: unsupported value")  # pragma: no cover


def _warm_start(data: dict, where: str) -> WarmStart:
    _no_unknown(data, {"spec", "source", "hypers"}, where)
    if ("spec" in data) == ("source" in data):
        raise SpaceError(f"{where}: give exactly one of spec (a built-in name or path) or source (spec text)")
    hypers = data.get("hypers", {})
    if not isinstance(hypers, dict):
        raise SpaceError(f"{where} hypers: expected a table such as {{ momentum = 0.9 }}")
    return WarmStart(data.get("spec"), data.get("source"), tuple(sorted(hypers.items())))


def _evolution(data: dict, weights: dict | None, where: str) -> Evolution:
    if "mutation_weights" in data:
        raise SpaceError(f"{where} [evolution]: mutation weights go in their own [mutation] table")
    evo = _section(Evolution, data, f"{where} [evolution]")
    if weights is None:
        return evo
    if not isinstance(weights, dict) or not all(isinstance(v, (int, float)) for v in weights.values()):
        raise SpaceError(f"{where} [mutation]: expected name = weight pairs")
    return dataclasses.replace(evo, mutation_weights=tuple((k, float(v)) for k, v in weights.items()))


def _scoring(tasks: dict, scoring: dict, where: str) -> Scoring:
    _no_unknown(tasks, {"search", "heldout"}, f"{where} [tasks]")
    merged = dict(scoring)
    if "search" in tasks:
        merged["search_tasks"] = tasks["search"]
    if "heldout" in tasks:
        merged["heldout_tasks"] = tasks["heldout"]
    return _section(Scoring, merged, f"{where} [scoring]")


# --- validation ------------------------------------------------------------------------


def validate(space: Space) -> Space:
    """Raise SpaceError for a space that cannot run; return it otherwise."""
    from .mutation import MUTATIONS
    from .tasks import TASKS

    v = space.vocabulary
    for name in v.operands:
        if name not in GIVEN_OPERANDS:
            raise SpaceError(f"[vocabulary] operands: unknown operand {name!r} (known: {', '.join(GIVEN_OPERANDS)})")
    if "g" not in v.operands:
        raise SpaceError("[vocabulary] operands: must include g")
    for fn in v.functions:
        function_arity(fn)
    from ..compiler import builtin_variants

    unknown = sorted(set(v.variants) - set(builtin_variants()))
    if unknown:
        raise SpaceError(f"[vocabulary] variants: unknown variant(s) {', '.join(unknown)} (known: {', '.join(builtin_variants())})")
    if v.max_statements < 1 or v.max_expression_size < 1:
        raise SpaceError("[vocabulary] max_statements and max_expression_size must be at least 1")
    for name, weight in space.evolution.mutation_weights:
        if name not in MUTATIONS:
            raise SpaceError(f"[mutation] unknown mutation {name!r} (known: {', '.join(MUTATIONS)})")
        if weight < 0:
            raise SpaceError(f"[mutation] {name}: weights must be >= 0")
    if not any(w > 0 for _, w in space.evolution.mutation_weights):
        raise SpaceError("[mutation] at least one mutation needs a positive weight")
    s = space.scoring
    for task in s.search_tasks + s.heldout_tasks:
        if task not in TASKS:
            raise SpaceError(f"[tasks] unknown task {task!r} (known: {', '.join(TASKS)})")
    if set(s.search_tasks) & set(s.heldout_tasks):
        raise SpaceError("[tasks] a held-out task cannot also be a search task")
    if not s.search_tasks:
        raise SpaceError("[tasks] search: give at least one task")
    if not (0 < s.lr_min <= s.lr_max) or s.lr_count < 1:
        raise SpaceError("[scoring] need 0 < lr_min <= lr_max and lr_count >= 1")
    if not 1 <= s.fidelities <= 3 or not 0 <= s.heldout_fidelity < 3:
        raise SpaceError("[scoring] fidelities is 1 to 3 and heldout_fidelity 0 to 2")
    if space.evolution.population < 2 or space.evolution.tournament < 1:
        raise SpaceError("[evolution] population >= 2 and tournament >= 1")
    return space


def function_arity(fn: str) -> tuple[str, int]:
    """``"max"`` -> ("max", 2); ``"max/1"`` -> ("max", 1); ``"+"`` -> ("+", 2)."""
    if fn in BINARY_OPERATORS:
        return fn, 2
    name, _, arity = fn.partition("/")
    table = FUNCTIONS.get(name)
    if table is None:
        raise SpaceError(f"[vocabulary] functions: unknown function {fn!r}")
    if arity:
        if not arity.isdigit() or int(arity) not in table:
            raise SpaceError(f"[vocabulary] functions: {name} takes {' or '.join(map(str, sorted(table)))} arguments")
        return name, int(arity)
    return name, max(table)
