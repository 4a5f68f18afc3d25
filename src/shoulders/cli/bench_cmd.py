"""shoulders bench train|generate|idpt|checkpointing|precision|all, plus the benches other files provide.

Our benches share one set of flags (device, dtype, threads, repeats, where to write).
Benches living in other files plug in by name: `shoulders bench retrieval` runs
`shoulders.bench.retrieval`, `shoulders bench serve` runs `shoulders.bench.serve`,
`shoulders bench soak` runs `shoulders.bench.soak`; each such module may define an
arguments hook and must define a runner (names in PLUGINS).
A plugin that cannot be imported still gets its sub-command, which then says why.
"""
from __future__ import annotations

import argparse
import importlib

from shoulders.cli.common import add_output_args

# name: (module, argument hooks tried in order, runners tried in order, help)
PLUGINS = {
    "retrieval": ("shoulders.bench.retrieval", ["add_retrieval_bench_arguments", "add_arguments"],
                  ["run_retrieval_bench_command", "run_from_args"], "BM25 and FAISS libraries side by side"),
    "serve": ("shoulders.bench.serve", ["add_serve_bench_args", "add_serve_bench_arguments", "add_arguments"],
              ["run_serve_bench_command", "run_from_args"], "the HTTP server under load"),
    "soak": ("shoulders.bench.soak", ["add_soak_bench_args", "add_arguments"], ["run_from_args"],
             "a bounded soak of the HTTP server: mixed and hostile requests, its RSS over time"),
}


def _common(p: argparse.ArgumentParser, sizes: bool = True) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes and 2 rounds (a ~2 minute `all`)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on CUDA) | float32 | bfloat16")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: every core this process may use)")
    p.add_argument("--repeats", type=int, default=0, help="timed rounds after the warm-up (default 3, precision 7; --quick 2)")
    p.add_argument("--warmup", type=int, default=1, help="discarded rounds before timing")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time, or process CPU time (for a machine shared with other jobs: use with --threads 1)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak TFLOP/s for an MFU column")
    p.add_argument("--root", default=".", help="where BENCHMARKS.md and benchmarks/ are written")
    p.add_argument("--no-write", action="store_true", help="print the tables only")
    add_output_args(p)
    if sizes:
        p.add_argument("--section", default=None, metavar="TITLE",
                       help="write a BENCHMARKS.md section of this title (and benchmarks/<its slug>.json) instead "
                       "of the bench's own, so a run at extra sizes does not replace the main table")
        p.add_argument("--sizes", help="comma-separated backbones: names in shoulders.bench.backbones.SPECS "
                       "(toy-small, toy-large, gpt2-mini, gpt2, gpt2-medium, gpt2-large, llama-mini, smollm-135m, "
                       "smollm-360m) or model directories")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks, written to BENCHMARKS.md and benchmarks/*.json")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH")
    bsub.required = True
    t = bsub.add_parser("train", help="training step time, memory, FLOP/s: PEFT vs ours (PT, ID-PT) vs full FT")
    _common(t)
    t.add_argument("--methods", default="peft,pt,idpt,ft", help="any of peft, pt, idpt, ft")
    t.add_argument("--batch", type=int, default=8, help="examples per step")
    t.add_argument("--input-tokens", type=int, default=128, help="input length")
    t.add_argument("--target-tokens", type=int, default=8, help="target length")
    t.add_argument("--prompt", type=int, default=20, help="soft-prompt vectors")
    t.add_argument("--ft-max-params", type=float, default=2e8, help="skip full fine-tuning above this size (0: never)")
    t.add_argument("--matmul-n", type=int, default=0, help="side of the square matmul yardstick (default 4096 on "
                   "CPU, 8192 on CUDA)")
    g = bsub.add_parser("generate", help="tokens/s from a soft prefix: FrozenLM.generate vs transformers generate")
    _common(g)
    g.add_argument("--batch", type=int, default=8, help="sequences decoded together")
    g.add_argument("--input-tokens", type=int, default=64, help="input length")
    g.add_argument("--prompt", type=int, default=20, help="soft-prompt vectors")
    g.add_argument("--new-tokens", type=int, default=32, help="tokens generated per sequence")
    i = bsub.add_parser("idpt", help="ID-PT prompt generation time over one backbone forward, by backbone size")
    _common(i)
    i.add_argument("--toy-backbone", action="append", default=[], metavar="PATH",
                   help="a trained toy backbone directory (replaces the toy shapes; repeatable)")
    c = bsub.add_parser("checkpointing", help="prompt-tuning step time and peak memory with and without gradient "
                        "checkpointing of the frozen backbone, and whether the gradients match")
    _common(c)
    c.add_argument("--batch", type=int, default=8, help="examples per step")
    c.add_argument("--input-tokens", type=int, default=128, help="input length")
    c.add_argument("--target-tokens", type=int, default=8, help="target length")
    c.add_argument("--prompt", type=int, default=20, help="soft-prompt vectors")
    c.add_argument("--long-input-tokens", type=int, default=512,
                   help="the input length of the long rows (0: no long rows)")
    c.add_argument("--long-sizes", help="comma-separated backbones measured again at --long-input-tokens "
                   "(default: gpt2-mini,llama-mini, or none when --sizes is given)")
    pr = bsub.add_parser("precision", help="float32 vs bf16 autocast on this CPU: the re-ranker's training step "
                         "and scoring (with the score differences), toy backbones' pre-training steps")
    _common(pr)  # --sizes: the pre-training rows' backbones (toy-small,toy-large; --quick toy-small)
    pr.add_argument("--questions", type=int, default=None, help="questions per re-ranker training step (default 8)")
    pr.add_argument("--score-questions", type=int, default=None,
                    help="questions scored, 5 candidates each (default 100, --quick 20)")
    pr.add_argument("--batch", type=int, default=None, help="rows per pre-training step (default 8)")
    pr.add_argument("--seq-len", type=int, default=None, help="tokens per pre-training row (default 256)")
    pr.add_argument("--no-compile", action="store_true", help="leave out the pre-training rows' bf16 step "
                    "through torch.compile (timed by default where a C++ compiler is found)")
    a = bsub.add_parser("all", help="train, generate and idpt with their default sizes")
    _common(a, sizes=False)
    for name, (_, _, _, help_) in PLUGINS.items():
        # Parsed when run, by the plugin's own flags: `shoulders` starts without importing it.
        # (prefix_chars: every flag, --help included, passes through as a plain string)
        pp = bsub.add_parser(name, help=help_, add_help=False, prefix_chars="\x00")
        pp.add_argument("rest", nargs="*")
        pp.set_defaults(func=_run_plugin, plugin=name)
    for sp, name in ((t, "train"), (g, "generate"), (i, "idpt"), (c, "checkpointing"), (pr, "precision"),
                     (a, "all")):
        sp.set_defaults(func=run, bench=name)


def _run_plugin(args) -> int:
    from shoulders.cli.main import Parser, UserError

    module, hooks, runners, help_ = PLUGINS[args.plugin]
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"the {args.plugin} bench is not available: {type(e).__name__}: {e}") from None
    runner = next((getattr(mod, r) for r in runners if hasattr(mod, r)), None)
    if runner is None:
        raise UserError(f"{module} defines none of {', '.join(runners)}")
    parser = Parser(prog=f"shoulders bench {args.plugin}", description=help_)
    hook = next((getattr(mod, h) for h in hooks if hasattr(mod, h)), None)
    if hook is not None:
        hook(parser)
    return int(runner(parser.parse_args(args.rest)) or 0)


def run(args) -> int:
    from shoulders.bench.runner import run_benches
    from shoulders.cli.main import UserError

    if args.clock == "cpu" and args.device.startswith("cuda"):
        raise UserError("--clock cpu measures host CPU time: use it on CPU only (GPU runs are timed on the wall clock)")

    if args.bench == "precision":
        if args.device not in ("auto", "cpu") or args.dtype not in ("auto", "float32"):
            raise UserError("the precision bench compares float32 with bf16 autocast on the CPU: use --device cpu "
                            "and --dtype float32 (or leave them out)")
        args.device, args.dtype = "cpu", "float32"
    names = ["train", "generate", "idpt"] if args.bench == "all" else [args.bench]
    return run_benches(names, args)
