"""The README and docs run as written (issue #22 part 2).

Every fenced `bash` and `python` block of README.md and docs/*.md runs, in page order, in
one temporary directory, after a small table of substitutions (hub ids -> tiny local models
this test builds, sizes -> small): tests/docblocks.py has the conventions, the table and the
files the directory starts with; tests/doc_shim/ shrinks the toy world and the experiments.
A block that cannot run here is marked `<!-- doc-test: skip -->` with a visible reason under
it. The terminal summary of a run says how many blocks ran, were skipped and why.
"""
from __future__ import annotations

import re

import pytest

from tests.docblocks import PAGES, ROOT, RUN, SUBSTITUTIONS, Runner, extract, substitute

BLOCKS = extract()
CHECKED = [i for i, b in enumerate(BLOCKS) if b.lang in RUN or b.marker]
LANGS = RUN | {"yaml", "json", "jsonc", "text", ""}  # the others are never run
MAX_SKIPPED = 4


class _Summary:
    def __init__(self, runner: Runner):
        self.runner = runner

    def pytest_terminal_summary(self, terminalreporter):
        if self.runner.results:
            terminalreporter.write_sep("-", "README.md and docs/*.md blocks")
            terminalreporter.write_line(self.runner.summary())


@pytest.fixture(scope="session")
def runner(tmp_path_factory, request):
    r = Runner(BLOCKS, tmp_path_factory.mktemp("docs"))
    request.config.pluginmanager.register(_Summary(r), "doc-blocks-summary")
    yield r
    r.close()


@pytest.mark.slow
@pytest.mark.parametrize("index", CHECKED, ids=[BLOCKS[i].id for i in CHECKED])
def test_doc_block_runs(runner, index):
    r = runner.result(index)
    if r.status == "skipped":
        pytest.skip(f"{r.block.id}: {r.output}")
    assert r.status in ("passed", "same"), (
        f"{r.block.id} ({r.block.lang}) failed{' (as ' + r.same_as + ')' if r.same_as else ''}; it ran as:\n"
        f"{r.ran_as}\n--- output (last 6000 characters) ---\n{r.output[-6000:]}")


def test_every_block_has_a_known_language_and_few_are_skipped():
    assert len(PAGES) > 10 and sum(b.lang in RUN for b in BLOCKS) >= 30
    odd = [f"{b.id}: {b.lang}" for b in BLOCKS if b.lang not in LANGS]
    assert not odd, f"fence these as bash or python (run) or as text (not run): {odd}"
    skipped = [b for b in BLOCKS if b.marker == "skip"]
    assert len(skipped) <= MAX_SKIPPED, [b.id for b in skipped]
    assert all(len(b.arg) > 10 for b in skipped)


def test_make_substitutions_are_the_makefile_recipes():
    """The table runs `make demo` as `shoulders demo --quick`: the recipes must be those commands."""
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo: \$\(STAMP\)\n\t\$\(BIN\)/shoulders demo \$\(DEMO_ARGS\)$", make, re.M)
    assert re.search(r"^quick-demo: \$\(STAMP\)\n\t\$\(BIN\)/shoulders demo --quick \$\(DEMO_ARGS\)$", make, re.M)
    values = dict.fromkeys(["gpt2", "llama", "chat", "t5", "data", "repo"], "X")
    assert substitute('make demo DEMO_ARGS="--seed 1"; make quick-demo; make demo', values) == \
        "shoulders demo --quick --seed 1; shoulders demo --quick; shoulders demo --quick"
    assert substitute('FrozenLM.from_pretrained("gpt2"); runs/sst2_gpt2/best; --sizes gpt2-large', values) == \
        'FrozenLM.from_pretrained("X"); runs/sst2_gpt2/best; --sizes gpt2-large'
    assert len(SUBSTITUTIONS) <= 15
