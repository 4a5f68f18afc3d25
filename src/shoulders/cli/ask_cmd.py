"""shoulders ask READER_DIR "question" [--json]: answer with a saved reader, showing its passages."""
from __future__ import annotations

from shoulders.cli.common import add_backbone_args, add_output_args


def add_parser(sub) -> None:
    p = sub.add_parser("ask", help="answer a question with a saved reader (retrieve, re-rank, pack, read)")
    p.add_argument("reader", help="reader module directory")
    p.add_argument("question", nargs="+", help="question(s)")
    p.add_argument("--index", help="retriever index directory (default: the one recorded in module.json)")
    p.add_argument("--corpus", help="passages file (default: the corpus recorded in index.json)")
    p.add_argument("--reranker", help="re-ranker module directory (default: the recorded one)")
    p.add_argument("--no-rerank", action="store_true", help="pack in retriever order")
    p.add_argument("--max-new-tokens", type=int, help="answer length limit (default: the reader's answer budget)")
    p.add_argument("--json", action="store_true", help="print the full answer record as JSON")
    add_backbone_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from shoulders.backbone.generation import GenerationConfig
    from shoulders.cli.common import load_module_and_backbone, print_json
    from shoulders.cli.main import UserError

    module, backbone = load_module_and_backbone(args, args.reader)
    if not callable(getattr(module, "answer", None)):
        raise UserError(f"{args.reader}: a {module.module_type} module, not a reader")
    for flag, field in (("index", "index_dir"), ("corpus", "corpus"), ("reranker", "reranker_dir")):
        if getattr(args, flag):
            setattr(module.config, field, getattr(args, flag))
    if args.no_rerank:
        module.config.reranker_dir = None
    cfg = None
    if args.max_new_tokens:
        cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, stop=("\n",))
    results = [dict(module.answer(backbone, q, cfg), question=q) for q in args.question]
    if args.json:
        print_json(results if len(results) > 1 else results[0])
        return 0
    for r in results:
        print(f"Q: {r['question']}\nA: {r['answer']}")
        how = "re-ranked" if r["reranked"] else "retriever order"
        print(f"  from {len(r['passages'])} passage(s), {r['context_tokens']} context tokens ({how}):")
        for p in r["passages"]:
            print(f"  {p['score']:9.3f}  {p['id']}  {p['title']}")
    return 0
