"""shoulders experiment NAME [flags]: development sweeps and data tools beside the demo.

Each is a module under shoulders.experiments with its own `main(argv)` and flags
(`shoulders experiment NAME --help`). They are one `shoulders` sub-command rather than
`python -m` entry points of their own, so `shoulders --help` lists every command there is.
The flags are parsed by the module when it runs: `shoulders` starts without importing it.
"""
from __future__ import annotations

import importlib

# name: (module whose main(argv) runs it, help)
EXPERIMENTS = {
    "backbone-sweep": ("shoulders.experiments.backbone_sweep",
                       "pre-train toy backbone variants and score them (or --step-speed, --copy-plateau)"),
    "knowledge": ("shoulders.experiments.knowledge",
                  "pre-train (or reuse) the toy backbones and report their few-shot closed-book EM against chance"),
    "sweep": ("shoulders.experiments.sweep", "multi-task method variants (or --recursion variants): dev scores"),
    "squad-rerank": ("shoulders.experiments.squad_rerank",
                     "SQuAD retrieval with and without the trained re-ranker (as `index eval-squad --rerank`, "
                     "with --threads)"),
    "reader-dev": ("shoulders.experiments.reader_dev",
                   "the frozen reader's packing order and re-ranking weights, scored on toyworld ODQA dev"),
    "toyworld-odqa": ("shoulders.experiments.toyworld_odqa",
                      "write toyworld ODQA files (corpus, re-ranker and reader data) for configs/reranker_*.yaml "
                      "and configs/reader_*.yaml"),
    "recursion-standin": ("shoulders.experiments.recursion_standin",
                          "the stand-in 1-hop/2-hop world and two tiny backbones that "
                          "configs/*recursion*_tiny_cpu.yaml train on"),
}


def add_parser(sub) -> None:
    p = sub.add_parser("experiment", help="development sweeps and data tools: " + ", ".join(EXPERIMENTS))
    esub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    esub.required = True
    for name, (_, help_) in EXPERIMENTS.items():
        # prefix_chars: every flag, --help included, passes through to the module's own parser
        ep = esub.add_parser(name, help=help_, add_help=False, prefix_chars="\x00")
        ep.add_argument("rest", nargs="*")
        ep.set_defaults(func=run, experiment=name)


# The output flags every long command takes after its name (cli/common.py:add_output_args).
# An experiment's flags go to its own parser untouched, so `main` moves these in front of
# `experiment`, where the top-level parser reads them (`hoist_output_flags`).
OUTPUT_FLAGS = ("--no-progress", "-q", "--quiet", "-v", "--verbose")


def hoist_output_flags(argv: list[str]) -> list[str]:
    """`shoulders experiment NAME ... --quiet` as `shoulders --quiet experiment NAME ...`."""
    if "experiment" not in argv:
        return argv
    i = argv.index("experiment")
    tail = argv[i:]
    return argv[:i] + [a for a in tail if a in OUTPUT_FLAGS] + [a for a in tail if a not in OUTPUT_FLAGS]


def run(args) -> int:
    module, _ = EXPERIMENTS[args.experiment]
    return int(importlib.import_module(module).main(args.rest) or 0)
