"""shoulders generate MODULE TEXT"""
from __future__ import annotations

from shoulders.cli.common import add_backbone_args, add_output_args, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate from a saved module")
    p.add_argument("module", help="module directory")
    p.add_argument("text", nargs="+", help="input text(s)")
    p.add_argument("--max-new-tokens", type=positive_int, default=32, help="tokens to generate at most")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: keep the likeliest tokens up to "
                   "this probability mass (1 = all)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0 = no limit)")
    p.add_argument("-n", type=positive_int, default=1, help="samples per input")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, help="sampling seed, for repeatable samples")
    p.add_argument("--json", action="store_true", help="print JSON with token log-probabilities")
    add_backbone_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from shoulders.backbone.generation import GenerationConfig
    from shoulders.cli.common import load_module_and_backbone, print_json
    from shoulders.cli.main import UserError
    from shoulders.errors import one_line

    try:  # check the sampling flags before loading anything
        cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=args.temperature > 0,
                               temperature=args.temperature or 1.0, top_p=args.top_p, top_k=args.top_k, n=args.n,
                               stop=tuple(args.stop), seed=args.seed)
    except ValueError as e:
        raise UserError(f"bad sampling flags: {one_line(e)} (--temperature, --top-p, --top-k, -n, --max-new-tokens)") from None
    module, backbone = load_module_and_backbone(args, args.module)
    results = module.generate(backbone, args.text, cfg)
    if args.json:
        print_json([{"input": t, "outputs": [g.__dict__ for g in gens]} for t, gens in zip(args.text, results)])
    else:
        for gens in results:
            for g in gens:
                print(g.text.strip())
    return 0
