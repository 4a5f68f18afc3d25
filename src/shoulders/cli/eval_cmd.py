"""shoulders eval MODULE --data FILE"""
from __future__ import annotations

from shoulders.cli.common import add_backbone_args, add_output_args, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="score a saved module on a data file")
    p.add_argument("module", help="module directory")
    p.add_argument("--data", required=True, help="JSONL/CSV/TSV/JSON file or datasets directory of examples")
    p.add_argument("--metric", default="exact_match", choices=["exact_match", "f1", "accuracy", "rouge_l"],
                   help="how a prediction is scored against the gold answers")
    p.add_argument("--input-field", help="the input's field or column (default: input, or P3's "
                   "inputs_pretokenized)")
    p.add_argument("--target-field", help="the answer's field or column (default: target, or P3's "
                   "targets_pretokenized)")
    p.add_argument("--choices", nargs="+", help="label words: evaluate by rank classification")
    p.add_argument("--max-examples", type=positive_int, help="score only the first N examples (default: all)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="examples per forward pass")
    p.add_argument("--max-new-tokens", type=positive_int, default=24, help="answer length limit when generating")
    p.add_argument("--predictions", help="write predictions to this JSONL file")
    add_backbone_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from shoulders.cli.common import load_module_and_backbone, print_json
    from shoulders.data.loaders import load_examples
    from shoulders.data.metrics import score
    from shoulders.train.evaluate import predict
    from shoulders.utils.fs import atomic_write_text

    examples = load_examples(args.data, input_field=args.input_field, target_field=args.target_field,
                             choices=args.choices)
    if args.max_examples:
        examples = examples[: args.max_examples]
    module, backbone = load_module_and_backbone(args, args.module)
    preds = predict(module, backbone, examples, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                    progress=not args.no_progress)
    scores = [score(args.metric, p, ex.gold) for p, ex in zip(preds, examples)]
    if args.predictions:
        atomic_write_text(args.predictions, "".join(
            json.dumps({"input": ex.input, "prediction": p, "gold": ex.gold, "score": s}, ensure_ascii=False) + "\n"
            for ex, p, s in zip(examples, preds, scores)))
    print_json({"module": args.module, "data": args.data, "metric": args.metric, "examples": len(examples),
                "score": 100.0 * sum(scores) / len(scores)})
    return 0
