"""Reading drills and the reading probe: answers that only the context can give.

A frozen reader must copy an answer out of its window. A backbone learns that only if
its pre-training keeps needing it, so these drills attach ordinary world objects
(cities, companies, schools, years) to *invented* subjects that no other text mentions:
memory cannot answer "Where was Ana Tesk born?", the passage must. They are rendered
exactly as the reader renders its window (`Passage: ...` lines, then `Q: ... A: ...`),
cover every relation, and put 1-3 passages about same-kind subjects in one window so
the model has to match the question's subject, not just copy the first object it sees.
Plain repeated spans (a random word list said twice) add the bare copying signal: the
second occurrence can only be predicted by looking back.

Invented names come from stem pools drawn apart from the world's names and from each
other: `corpus` pools feed the pre-training drills, `probe` pools feed the held-out
reading probe, so no probe subject ever appears in the corpus.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from shoulders.data.examples import Example
from shoulders.toyworld.lexicon import INDUSTRIES, PROFESSIONS, UNIVERSITY_WORDS, article
from shoulders.toyworld.names import NameMaker
from shoulders.toyworld.relations import QUESTIONS, STATEMENTS
from shoulders.toyworld.world import RELATIONS, World, world_stems

# Subject kinds drawn for drills, weighted towards those the open-domain set asks about
# unseen (people, products), while every kind (so every relation) keeps a share.
KIND_WEIGHTS = {"person": 5, "product": 2, "company": 2, "city": 1, "country": 1, "university": 1}


@dataclass
class NamePools:
    """Invented name stems, disjoint from the world's and from every other pool."""

    firsts: list[str]
    lasts: list[str]
    places: list[str]
    countries: list[str]
    brands: list[str]


PROBE_POOL = 100  # invented stems per kind (last names, brands) in the probe's pool: a wide sample of unseen names


def name_pools(world: World, purpose: str, size: int = 60) -> NamePools:
    """Pools for `purpose` ("corpus" or "probe"); `size` sets the corpus pool's last names
    and brands (the probe's is fixed). Both come from one NameMaker, probe first, so their
    stems never clash with each other or with the world's, and the probe stays the same
    whatever corpus pool is drawn after it."""
    if purpose not in ("corpus", "probe"):
        raise ValueError(f"name_pools purpose={purpose!r}: expected 'corpus' or 'probe'")
    maker = NameMaker(random.Random(f"reading-names-{world.seed}"), used=world_stems(world))

    def draw(n: int) -> NamePools:
        return NamePools(firsts=maker.pool("first", max(6, n // 3)), lasts=maker.pool("last", n),
                         places=maker.pool("city", max(6, n // 2)), countries=maker.pool("country", max(4, n // 6)),
                         brands=maker.pool("brand", n))

    probe = draw(PROBE_POOL)
    return probe if purpose == "probe" else draw(size)


def probe_stems(world: World) -> set[str]:
    """Every stem of the probe's pool: names the corpus's other generators must not invent."""
    p = name_pools(world, "probe")
    return {s.lower() for s in p.firsts + p.lasts + p.places + p.countries + p.brands}


def _subject(kind: str, world: World, pools: NamePools, rng: random.Random) -> str:
    if kind == "person":
        # Half the time a world person's first name: a familiar first name must not
        # pull the answer towards the memorised person (as in the open-domain set).
        firsts = [e.name.split()[0] for e in world.of_kind("person")] if rng.random() < 0.5 else pools.firsts
        return f"{rng.choice(firsts)} {rng.choice(pools.lasts)}"
    if kind == "company":
        return f"{rng.choice(pools.brands)} {rng.choice(list(INDUSTRIES.values()))[0]}"
    if kind == "product":
        return rng.choice(pools.brands) + rng.choice(("", "", " " + rng.choice(pools.brands)))
    if kind == "city":
        return rng.choice(pools.places)
    if kind == "country":
        return rng.choice(pools.countries)
    return f"{rng.choice(pools.lasts)} {rng.choice(UNIVERSITY_WORDS)}"


def _distinct_subjects(kind: str, n: int, world: World, pools: NamePools, rng: random.Random) -> list[str]:
    """`n` invented subjects of `kind`, no name inside another ("Nilon" in "Nilon Fex")."""
    subjects: list[str] = []
    while len(subjects) < n:
        s = _subject(kind, world, pools, rng)
        if not any(s in t or t in s for t in subjects):
            subjects.append(s)
    return subjects


def _object(relation: str, world: World, rng: random.Random) -> str:
    """An ordinary world object (or literal) of the relation's object type."""
    kind = RELATIONS[relation][1]
    if kind != "literal":
        return rng.choice(world.of_kind(kind)).name
    if relation == "profession":
        return rng.choice(PROFESSIONS)
    if relation in ("birth_year", "founded_year"):
        return str(rng.randint(1940, 2015))
    if relation == "industry":
        return rng.choice(list(INDUSTRIES))
    return rng.choice(rng.choice(list(INDUSTRIES.values()))[1])  # category


def _say(template: str, subject: str, obj: str) -> str:
    return template.format(s=subject, o=obj, ao=f"{article(obj)} {obj}")


@dataclass
class ReadingItem:
    passages: list[str]
    question: str
    answer: str
    relation: str

    def context(self, passage_template: str = "Passage: {text}", separator: str = "\n") -> str:
        return separator.join(passage_template.format(text=p) for p in self.passages)

    def render(self, with_answer: bool = True) -> str:
        """The reader's own window: passages, then `Q: ... A:` (and the answer)."""
        tail = f" {self.answer}" if with_answer else ""
        return f"{self.context()}\nQ: {self.question} A:{tail}"


def reading_item(world: World, pools: NamePools, rng: random.Random, n_passages: tuple[int, int] = (1, 3),
                 facts_per_passage: tuple[int, int] = (1, 3)) -> ReadingItem:
    """1-3 passages about invented subjects of one kind; a question about one of their facts.

    Every passage states the asked relation for its own subject (with another object), so
    only the subject's name tells which passage answers.
    """
    kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    relations = [r for r, (s, _) in RELATIONS.items() if s == kind]
    asked = rng.choice(relations)
    n = rng.randint(*n_passages)
    subjects = _distinct_subjects(kind, n, world, pools, rng)
    passages, answer = [], ""
    for i, subj in enumerate(subjects):
        others = [r for r in relations if r != asked]
        rels = [asked] + rng.sample(others, min(len(others), rng.randint(*facts_per_passage) - 1))
        rng.shuffle(rels)
        sents = []
        for r in rels:
            obj = _object(r, world, rng)
            if i == 0 and r == asked:
                answer = obj
            sents.append(_say(rng.choice(STATEMENTS[r]), subj, obj))
        passages.append(" ".join(sents))
    order = list(range(n))
    rng.shuffle(order)  # the answering passage can sit anywhere in the window
    question = rng.choice(QUESTIONS[asked]).format(s=subjects[0])
    return ReadingItem([passages[i] for i in order], question, answer, asked)


def multi_question_drill(world: World, pools: NamePools, rng: random.Random, n_passages: tuple[int, int] = (2, 3),
                         n_questions: tuple[int, int] = (2, 3), with_subjects: bool = False) -> str:
    """Passages about invented subjects of one kind, then several `Q: ... A: ...` lines, each
    about a different passage's subject (multi-query associative recall in the reader's format).

    Every passage states one shared relation, so the question's relation alone never tells
    which passage answers: only the subject's name does. That matching is what the reader's
    multi-passage windows need and what one-question drills teach slowly (one answer per
    document); here each document gives one such answer per question. `with_subjects`
    appends a tab and the asked subject to each question line (for tests).
    """
    kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    relations = [r for r, (s, _) in RELATIONS.items() if s == kind]
    shared = rng.choice(relations)
    n = rng.randint(*n_passages)
    subjects = _distinct_subjects(kind, n, world, pools, rng)
    passages, facts = [], []
    for i, subj in enumerate(subjects):
        others = [r for r in relations if r != shared]
        rels = [shared] + rng.sample(others, min(len(others), rng.randint(0, 2)))
        rng.shuffle(rels)
        sents = []
        for r in rels:
            obj = _object(r, world, rng)
            facts.append((i, r, obj))
            sents.append(_say(rng.choice(STATEMENTS[r]), subj, obj))
        passages.append(" ".join(sents))
    order = list(range(n))
    rng.shuffle(order)
    lines = [f"Passage: {passages[k]}" for k in order]
    for i in rng.sample(range(n), min(n, rng.randint(*n_questions))):
        mine = [(r, o) for j, r, o in facts if j == i]
        r, obj = next((f for f in mine if f[0] == shared)) if rng.random() < 0.7 else rng.choice(mine)
        lines.append(f"Q: {rng.choice(QUESTIONS[r]).format(s=subjects[i])} A: {obj}")
        if with_subjects:
            lines[-1] += f"\t{subjects[i]}"
    return "\n".join(lines)


def assoc_recall_drill(world: World, pools: NamePools, rng: random.Random, n_pairs: tuple[int, int] = (3, 6),
                       n_queries: tuple[int, int] = (2, 4)) -> str:
    """Invented subjects of one kind paired with objects of one relation, then some of the
    subjects again, each followed by its object (multi-query associative recall).

    The reader's multi-passage windows need the question's subject matched to its passage;
    here nothing but that match predicts a value (every value is an ordinary world entity of
    the same type, and the keys are multi-token unseen names), in a few dozen tokens rather
    than a window of passages, so nearly every value token needs the match.
    """
    kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    relation = rng.choice([r for r, (s, _) in RELATIONS.items() if s == kind])
    subjects = _distinct_subjects(kind, rng.randint(*n_pairs), world, pools, rng)
    objects = [_object(relation, world, rng) for _ in subjects]
    asked = rng.sample(range(len(subjects)), min(len(subjects), rng.randint(*n_queries)))
    head, ask = rng.choice((("Table", "Lookup"), ("Index", "Find"), ("Pairs", "Recall")))
    table = " ".join(f"{s}: {o}." for s, o in zip(subjects, objects))
    return f"{head}: {table}\n{ask}: " + " ".join(f"{subjects[i]}: {objects[i]}." for i in asked)


def copy_drill(world: World, pools: NamePools, rng: random.Random, length: tuple[int, int] = (6, 24)) -> str:
    """A random list of invented names and words, said twice: the repeat can only be copied.
    No world entity appears: a list naming both ends of a 2-hop chain would leak it."""
    vocab = pools.lasts + pools.brands + pools.places + list(PROFESSIONS) + [str(y) for y in range(1950, 2016, 7)]
    words = [rng.choice(vocab) for _ in range(rng.randint(*length))]
    sep = rng.choice((", ", " ", "; "))
    a, b = rng.choice((("List", "Again"), ("Names", "Repeat"), ("Notes", "Copy")))
    return f"{a}: {sep.join(words)}.\n{b}: {sep.join(words)}."


def reading_probe(world: World, n: int = 200, seed: int = 0, split: str = "test") -> list[Example]:
    """Held-out reading items (probe name pools, never in the corpus) as Examples whose
    input is the reader's window without the answer. `split` draws disjoint items."""
    pools = name_pools(world, "probe")
    rng = random.Random(f"reading-probe-{world.seed}-{seed}-{split}")
    out = []
    for i in range(n):
        item = reading_item(world, pools, rng)
        out.append(Example(input=item.render(with_answer=False), target=item.answer, task="reading_probe",
                           id=f"read-{split}-{i:04d}",
                           meta={"relation": item.relation, "passages": len(item.passages)}))
    return out


@dataclass
class ReadingProbeResult:
    em: float  # % exact match, few-shot greedy
    n: int
    by_passages: dict[int, float]  # EM by passages in the window
    predictions: list[str]


def reading_probe_eval(model_or_dir, world: World, n: int = 200, k: int = 2, seed: int = 0,
                       split: str = "test") -> ReadingProbeResult:
    """Few-shot reading EM of a frozen backbone, no training: k solved one-passage items
    (from the probe's own "demo" draw), then a held-out item, greedy to the end of the line."""
    from shoulders.data.metrics import exact_match
    from shoulders.toyworld.fewshot import FewShotConfig, _load, generate_answers

    items = reading_probe(world, n, seed, split)
    pools = name_pools(world, "probe")
    rng = random.Random(f"reading-demos-{world.seed}-{seed}-{split}")
    prompts = []
    for ex in items:
        demos = [reading_item(world, pools, rng, n_passages=(1, 1), facts_per_passage=(1, 2)).render()
                 for _ in range(k)]
        prompts.append("\n".join([*demos, ex.input]))
    model, tok = _load(model_or_dir)
    preds = generate_answers(model, tok, prompts, FewShotConfig(max_new_tokens=12))
    scores = [float(exact_match(p, ex.target)) for p, ex in zip(preds, items)]
    by: dict[int, list[float]] = {}
    for ex, s in zip(items, scores):
        by.setdefault(ex.meta["passages"], []).append(s)
    return ReadingProbeResult(em=100 * sum(scores) / max(1, len(scores)), n=len(scores),
                              by_passages={p: 100 * sum(v) / len(v) for p, v in sorted(by.items())},
                              predictions=preds)


def assoc_recall_eval(model_or_dir, world: World, n: int = 150, seed: int = 0) -> float:
    """% of held-out associative-recall queries (`assoc_recall_drill` on the probe's unseen
    names) whose object the frozen backbone completes greedily, no training: the subject
    match alone, apart from the reader's format. Chance is about 1 / (pairs in the table)."""
    from shoulders.data.metrics import exact_match
    from shoulders.toyworld.fewshot import FewShotConfig, _load, generate_answers

    pools = name_pools(world, "probe")
    rng = random.Random(f"assoc-probe-{world.seed}-{seed}")
    prompts, golds = [], []
    for _ in range(n):
        table, queries = assoc_recall_drill(world, pools, rng).split("\n")
        head, asked = queries.split(": ", 1)
        pairs = asked.rstrip(".").split(". ")
        k = rng.randrange(len(pairs))  # ask the k-th query, the ones before it shown solved
        subject, obj = pairs[k].split(": ")
        prompts.append(f"{table}\n{head}: " + "".join(f"{p}. " for p in pairs[:k]) + f"{subject}:")
        golds.append(obj)
    model, tok = _load(model_or_dir)
    preds = generate_answers(model, tok, prompts, FewShotConfig(max_new_tokens=12))
    return 100 * sum(float(exact_match(p.split(". ")[0].rstrip("."), g)) for p, g in zip(preds, golds)) / n


def induction_ratio(model_or_dir, n: int = 16, length: int = 40, seed: int = 0) -> float:
    """Loss per token on the second copy of a random token sequence over the first: ~1 means
    the model cannot copy at all; an LM with induction heads goes far below 1."""
    import torch

    from shoulders.toyworld.fewshot import _load

    model, tok = _load(model_or_dir)
    g = torch.Generator().manual_seed(seed)
    low = 3 + 256  # skip the special and byte tokens
    seq = torch.randint(low, len(tok), (n, length), generator=g)
    ids = torch.cat([torch.full((n, 1), tok.bos_token_id), seq, seq], 1)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    first, second = nll[:, 1:length].mean(), nll[:, length + 1:].mean()
    return float(second / first)
