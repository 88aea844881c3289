"""``optdsl explain``: what the compiler made of a spec, as text."""

from __future__ import annotations

from .compiler import SpecSource, lower, optimize
from .frontend.printer import format_number
from .ir.cost import flops, matrix_ops, traffic
from .ir.hashing import canonical_hash
from .ir.printer import expr_text, rule_latex, rule_text

_CASES = (
    ("fp32 params and states", 4, 4, 4),
    ("bf16 params and grads, fp32 states", 2, 2, 4),
)


def explain_source(src: SpecSource, latex: bool = True, variants: tuple[str, ...] = ()) -> str:
    rule, warnings = lower(src, variants)
    trace: list = []
    optimized = optimize(rule, trace)
    lines = [f"{optimized.name}: {optimized.doc}" if optimized.doc else optimized.name, f"spec: {src.origin}"]
    if optimized.variants:
        lines.append(f"variants: {', '.join(optimized.variants)}")
    lines.append("")
    if optimized.hypers:
        lines.append("hypers:")
        for h in optimized.hypers:
            default = format_number(h.default) if h.type == "float" else repr(h.default)
            domain = f" in {h.domain_text()}" if h.domain_text() else ""
            lines.append(f"  {h.name} = {default}{domain}")
    lines.append("states:" if optimized.states else "states: none")
    for s in optimized.states:
        lines.append(f"  {s.name}: {s.shape}, starts at {expr_text(s.init)}")
    dropped = [s.name for s in rule.states if s.name not in {t.name for t in optimized.states}]
    if dropped:
        lines.append(f"  (dead, removed: {', '.join(dropped)})")
    lines += ["", "rule after the passes:"]
    lines += ["  " + line for line in rule_text(optimized).splitlines()]
    if latex:
        lines += ["", "LaTeX:"]
        lines += ["  " + line for line in rule_latex(optimized).splitlines()]
    lines += ["", "memory traffic per parameter and step (one fused pass):"]
    for label, pb, gb, sb in _CASES:
        t = traffic(optimized, pb, gb, sb)
        reads = ", ".join(name for name, _ in t.reads)
        writes = ", ".join(name for name, _ in t.writes)
        lines.append(f"  {label}: read {t.read_bytes} B ({reads}), write {t.write_bytes} B ({writes}): {t.total} B")
        if t.reduction_reads:
            lines.append(
                f"    + {t.reduction_bytes} B re-read for whole-tensor reductions "
                f"({', '.join(n for n, _ in t.reduction_reads)})"
            )
    mats = matrix_ops(optimized)
    lines.append(f"flops per parameter: {flops(optimized)} elementwise" + (f", plus matrix ops: {', '.join(mats)}" if mats else ""))
    lines += ["", "passes:"]
    lines += [f"  {i}. {name}" for i, (name, _) in enumerate(trace, 1)]
    lines += [f"  note: {note}" for note in optimized.notes]
    lines += ["", f"canonical hash: {canonical_hash(rule)}"]
    if warnings:
        lines += ["", "warnings:"]
        lines += ["  " + w.format(None).replace("\n", "\n  ") for w in warnings]
    return "\n".join(lines)
