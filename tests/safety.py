"""An allow-list of what a generated optimizer module may contain.

``assert_safe_module(code, rule)`` parses the module and walks every node: the
top level holds only a docstring, imports of math/torch (triton later),
``__all__``, helper functions and one class (and its metaclass, a docstring);
no node type outside a fixed set (no lambda, global, del, walrus, async, ...);
no exec/eval/compile/__import__/open and friends; no dunder attribute but ``super().__init__`` and ``super().__setstate__``; getattr only on
torch with a non-dunder name; and every string constant outside a docstring is
a name of the spec (hyper, state, choice), a key or message of the template, or
a message built from those names.
"""

from __future__ import annotations

import ast
import re

ALLOWED_IMPORTS = {"math", "torch", "triton", "triton.language"}
ALLOWED_NODES = {
    ast.Module, ast.Expr, ast.Constant, ast.Import, ast.alias, ast.Assign, ast.AugAssign, ast.List, ast.Tuple,
    ast.Dict, ast.Name, ast.Load, ast.Store, ast.FunctionDef, ast.ClassDef, ast.arguments, ast.arg, ast.keyword,
    ast.Return, ast.If, ast.IfExp, ast.For, ast.comprehension, ast.ListComp, ast.GeneratorExp, ast.DictComp, ast.With,
    ast.withitem, ast.Raise, ast.Try, ast.ExceptHandler, ast.Pass, ast.Continue, ast.Call, ast.Attribute,
    ast.Subscript, ast.Slice, ast.Starred, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.JoinedStr,
    ast.FormattedValue,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.MatMult, ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
}
FORBIDDEN_NAMES = {
    "exec", "eval", "compile", "__import__", "open", "globals", "locals", "vars", "setattr", "delattr", "input",
    "breakpoint", "__builtins__", "exit", "quit", "help", "memoryview", "os", "sys", "subprocess", "importlib",
    "builtins", "type", "object", "classmethod", "property", "__loader__", "__spec__", "__file__",
}
ALLOWED_DECORATORS = {"staticmethod", "torch.no_grad()", "triton.jit"}
# the one other class: the optimizer's metaclass, ``class _SpecClass(type)`` with only a docstring,
# so that ``optdsl.load()`` can register how to pickle the optimizer class (optdsl/runtime/pickling.py)
METACLASS = "_SpecClass"
# dunder methods the class may define, calling only super()'s (__setstate__: on train/eval blocks)
SUPER_METHODS = {"__init__", "__setstate__"}

# string constants of the template itself (keys, message pieces)
TEMPLATE_STRINGS = {
    "(", ")", "[", "]", ", ", ": ", "Invalid ", " (must be in ", "Invalid state_dtype: ",
    " (a floating-point torch.dtype or its name)", "torch.", "beta", "betas", "step", "params", "param_groups",
    "state", "state_dtype", "maximize", "foreach", "placements", "train_mode", "cpu",
    # hyperparameter types, torch.optim's keywords and state names (optdsl/backends/torch_api.py)
    "", "=", ", or ", "Tensor ", " must be 1-element", " (must be a number)", " (must be True or False)",
    " as a Tensor is not supported for capturable=False and foreach=True", "capturable",
    "betas must be either all floats or all Tensors", "base_momentum", "_momentum_watch",
    ".load_state_dict: the state of parameter ", " does not fit: missing ", ", unknown ",
    " (this optimizer keeps step and ", "; torch.optim's names for them: ",
    ": a scheduler cycles ", " as momentum (this param group has base_momentum: cycle_momentum=True), but with ",
    " the rule ignores ", ": pass cycle_momentum=False to the scheduler",
    'fused=True: the torch backend has no fused kernels; on a GPU, load the spec with backend="triton" '
    '(optdsl.load(spec, backend="triton")), whose kernels fuse the whole update',
    "capturable=True: the torch backend reads the step count on the host; to capture the step in a CUDA "
    'graph, load the spec with backend="triton", which takes capturable=True',
    "differentiable=True is not supported: the step runs under torch.no_grad()",
}


def _message_patterns(cls: str) -> list[re.Pattern]:
    name = r"[A-Za-z][A-Za-z0-9_]*"
    c = re.escape(cls)
    return [re.compile(p) for p in (
        rf"{c} does not support sparse gradients",
        rf"{c} needs floating-point parameters, got ",
        rf"{c} does not support complex parameters: its rule uses [a-z_@(), ]+, which would see "
        r"torch\.view_as_real's extra dimension \(give it real parameters, or use an elementwise rule\)",
        rf"{c} applies [A-Za-z0-9_@, ]+ to this parameter, which needs at least \d dimensions?; it has shape ",
        rf"{c} reduces over whole tensors \([A-Za-z0-9_@, ]+\), but this parameter of shape ",
        r" is a DTensor shard \(placements ",
        rf"\): the reduction would see this shard alone; give {c} unsharded \(replicated\) parameters",
        rf"{c}\.step\(\) was called in eval mode: call optimizer\.train\(\) first",
        rf"Invalid {name}: ",
        rf" \(one of {name}(, {name})*\)",
        r"betas must have \d+ values, got ",
        r"betas\[\d+\]",
        r"a channel reduction needs a tensor with a first dimension, got shape ",
        r"newton_schulz needs a tensor with at least 2 dimensions, got shape ",
        r"newton_schulz takes a whole number of steps, got ",
    )]


def docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def allowed_strings(rule) -> set[str]:
    names = {rule.name} | {h.name for h in rule.hypers} | {s.name for s in rule.states}
    names |= {c for h in rule.hypers for c in h.choices}
    names |= {s.alias for s in rule.states if s.alias is not None}  # torch.optim's state names
    names |= {k.name for k in rule.keywords} | {k.message for k in rule.keywords}
    names |= {k.value for k in rule.keywords if isinstance(k.value, str)}
    names |= {r.message for r in rule.requirements}
    return TEMPLATE_STRINGS | names


def assert_safe_module(code: str, rule) -> ast.Module:
    """Parse ``code`` and check it against the allow-list; returns the tree."""
    tree = ast.parse(code)
    body = tree.body
    assert isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)
    classes = [s for s in body if isinstance(s, ast.ClassDef)]
    assert [c.name for c in classes] == [METACLASS, rule.name]
    for stmt in body[1:]:
        if isinstance(stmt, ast.Import):
            assert all(a.name in ALLOWED_IMPORTS and a.asname in (None, "tl") for a in stmt.names), ast.dump(stmt)
        elif isinstance(stmt, ast.Assign):
            assert [ast.unparse(t) for t in stmt.targets] == ["__all__"]
            assert ast.literal_eval(stmt.value) == [rule.name]
        elif isinstance(stmt, ast.FunctionDef):
            assert stmt.name.startswith("_") and not stmt.name.startswith("__"), stmt.name
        else:
            assert isinstance(stmt, ast.ClassDef), ast.dump(stmt)
    meta, cls = classes
    assert [ast.unparse(b) for b in meta.bases] == ["type"] and not meta.keywords
    assert len(meta.body) == 1 and id(getattr(meta.body[0], "value", None)) in docstring_nodes(tree), "only a docstring"
    assert [ast.unparse(b) for b in cls.bases] == ["torch.optim.Optimizer"]
    assert [(k.arg, ast.unparse(k.value)) for k in cls.keywords] == [("metaclass", METACLASS)]

    docs = docstring_nodes(tree)
    strings = allowed_strings(rule)
    patterns = _message_patterns(rule.name)
    for node in ast.walk(tree):
        assert type(node) in ALLOWED_NODES, f"{type(node).__name__} at line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            assert node in body, "imports only at the top level"
        elif isinstance(node, ast.Name):
            assert node.id not in FORBIDDEN_NAMES or node is meta.bases[0], node.id
            assert not node.id.startswith("__") or node.id == "__all__", node.id
        elif isinstance(node, ast.Attribute):
            assert not node.attr.startswith("__") or node.attr in SUPER_METHODS, node.attr
            if node.attr in SUPER_METHODS:
                assert ast.unparse(node.value) == "super()"
        elif isinstance(node, ast.FunctionDef):
            assert not node.name.startswith("__") or node.name in SUPER_METHODS, node.name
            for d in node.decorator_list:
                assert ast.unparse(d) in ALLOWED_DECORATORS, ast.unparse(d)
        elif isinstance(node, ast.ClassDef):
            assert node in (meta, cls) and not node.decorator_list
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            target, attr = node.args[0], node.args[1]
            assert ast.unparse(target) == "torch", ast.unparse(node)
            assert not (isinstance(attr, ast.Constant) and str(attr.value).startswith("_")), ast.unparse(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            if id(node) not in docs:
                assert value in strings or any(p.fullmatch(value) for p in patterns), f"string constant {value!r}"
        elif isinstance(node, ast.Constant):
            assert node.value is None or isinstance(node.value, (bool, int, float)), repr(node.value)
    return tree
