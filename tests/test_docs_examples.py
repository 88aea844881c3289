"""Every example in docs/language.md works as the page says, so the reference cannot rot.

Fenced blocks are checked by their info string:

* ``opt``: an optimizer spec; it compiles, and the optimizer takes two steps on
  two matrices, moving them to finite values.
* ``opt-variant``: a variant; applied to the built-in ``adamw`` the same holds.
* ``opt-error``: compiling it raises SpecError; when the next block is
  ``text diagnostics``, the error prints exactly as shown there (the file is
  named after the header: ``optimizer Broken`` -> ``broken.opt``).
* ``text passes``: exactly what ``optdsl passes`` prints.
* ``text explain NAME``: every line shown is a line of ``optdsl explain NAME``.

The function tables and the list of reserved names must cover the language's own tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch

import optdsl
from optdsl.compiler import compile_source, from_text
from optdsl.frontend.names import DSL_KEYWORDS, FUNCTIONS, GENERATED_NAMES, SHAPE_NAMES
from optdsl.passes import describe

from conftest import REPO

DOC = REPO / "docs" / "language.md"
SHAPES = [(4, 3), (3, 5)]


@dataclass(frozen=True)
class Block:
    info: str
    text: str
    line: int  # of the opening fence

    @property
    def kind(self) -> str:
        return self.info.split()[0] if self.info else ""


def fenced_blocks(markdown: str) -> list[Block]:
    """The fenced code blocks of ``markdown``, in order, with their info strings."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            info, start, body = lines[i][3:].strip(), i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise AssertionError(f"docs/language.md:{start}: unclosed code block")
            blocks.append(Block(info, "\n".join(body) + "\n", start))
        i += 1
    return blocks


BLOCKS = fenced_blocks(DOC.read_text(encoding="utf-8"))


def blocks_of(kind: str) -> list[Block]:
    return [b for b in BLOCKS if b.kind == kind]


def _id(block: Block) -> str:
    return f"line{block.line}"


def step_twice(cls) -> None:
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
    before = [p.detach().clone() for p in params]
    opt = cls(params)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    for p, b in zip(params, before):
        assert torch.isfinite(p).all()
        assert not torch.equal(p.detach(), b), "the example's update left a parameter unchanged"


def test_the_page_has_every_kind_of_example():
    kinds = {b.kind for b in BLOCKS}
    assert {"opt", "opt-variant", "opt-error", "text"} <= kinds
    assert len(blocks_of("opt")) >= 10


@pytest.mark.parametrize("block", blocks_of("opt"), ids=_id)
def test_optimizer_example_compiles_and_steps(block):
    step_twice(optdsl.load(source=block.text))


@pytest.mark.parametrize("block", blocks_of("opt-variant"), ids=_id)
def test_variant_example_applies_to_adamw(block, tmp_path):
    path = tmp_path / "example_variant.opt"
    path.write_text(block.text, encoding="utf-8")
    cls = optdsl.load("adamw", variants=[str(path)])
    assert cls.__name__ != "AdamW" and cls.__name__.endswith("AdamW")
    step_twice(cls)


def _file_name(spec_text: str) -> str:
    match = re.search(r"^\s*(?:optimizer|variant)\s+(\w+)", spec_text, re.M)
    assert match, "an error example needs a header to name its file"
    return match.group(1).lower() + ".opt"


@pytest.mark.parametrize("block", blocks_of("opt-error"), ids=_id)
def test_error_example_fails_as_shown(block):
    with pytest.raises(optdsl.SpecError) as info:
        compile_source(from_text(block.text, _file_name(block.text)))
    following = BLOCKS[BLOCKS.index(block) + 1] if BLOCKS.index(block) + 1 < len(BLOCKS) else None
    if following is not None and following.info == "text diagnostics":
        assert info.value.format() == following.text.rstrip("\n")


def test_every_diagnostics_block_follows_an_error_example():
    for i, block in enumerate(BLOCKS):
        if block.info == "text diagnostics":
            assert i > 0 and BLOCKS[i - 1].kind == "opt-error", f"line {block.line}"


def test_passes_block_is_the_pipeline():
    (block,) = [b for b in BLOCKS if b.info == "text passes"]
    assert block.text.rstrip("\n") == describe()


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.info.startswith("text explain ")], ids=_id)
def test_explain_block_lines_appear_in_the_output(block):
    spec = block.info.split()[2]
    output = set(optdsl.explain(spec).splitlines())
    missing = [line for line in block.text.splitlines() if line not in output]
    assert not missing, f"not in `optdsl explain {spec}`: {missing}"


def test_every_function_and_shape_scalar_is_documented():
    text = DOC.read_text(encoding="utf-8")
    for name in FUNCTIONS:
        assert re.search(rf"^\| `{name}\(", text, re.M), f"function {name} has no row in the tables"
    for name in SHAPE_NAMES:
        assert re.search(rf"^\| `{name}` \|", text, re.M), f"shape scalar {name} has no row"


def test_reserved_names_are_listed():
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Names"):text.index("## Errors and warnings")]
    words = set(re.findall(r"[A-Za-z_]+", section))
    assert GENERATED_NAMES <= words, sorted(GENERATED_NAMES - words)
    assert DSL_KEYWORDS <= words, sorted(DSL_KEYWORDS - words)
