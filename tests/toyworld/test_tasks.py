from collections import Counter

from shoulders.data.examples import Task
from shoulders.toyworld import build_tasks, build_world, clusters
from shoulders.toyworld.task_defs import SPECS
from shoulders.toyworld.tasks import TaskSetConfig

CLUSTERS = {"sentiment", "paraphrase", "closed-book QA", "extractive QA", "topic classification",
            "structure-to-text", "summarisation", "NLI"}


def test_suite_covers_the_p3_clusters(data):
    assert CLUSTERS <= set(clusters(data.tasks))
    assert all(isinstance(t, Task) for t in data.tasks)


def test_every_task_has_templates_and_nonempty_splits(data):
    assert all(len(spec.templates) >= 2 for spec in SPECS)
    for t in data.tasks:
        assert t.train and t.dev and t.test, t.name
        assert len({ex.meta["template"] for ex in t.train}) >= 2, t.name
        assert len({ex.input for ex in t.train}) == len(t.train), t.name


def test_classification_tasks_rank_over_choices(data):
    for t in data.tasks:
        for ex in t.train + t.test:
            if t.metric == "accuracy":
                assert ex.choices and ex.target in ex.choices, (t.name, ex)
            else:
                assert not ex.choices and t.metric in ("exact_match", "f1", "rouge_l")
            limit = 25 if t.cluster in ("summarisation", "structure-to-text") else 8
            assert 1 <= len(ex.target.split()) <= limit, (t.name, ex.target)


def test_labels_are_roughly_balanced():
    tasks = build_tasks(build_world(0, "quick"), TaskSetConfig.quick())
    for t in tasks:
        if t.name in ("product_reviews", "fact_paraphrase", "fact_nli"):
            counts = Counter(ex.meta["label"] for ex in t.train)
            assert min(counts.values()) >= 0.2 * len(t.train), (t.name, counts)


def test_test_entities_are_held_out_of_every_training_split(data):
    train_subjects = {ex.meta["subject"] for t in data.tasks for ex in t.train}
    test_subjects = {ex.meta["subject"] for t in data.tasks for ex in t.test if ex.meta["subject"]}
    assert test_subjects and not (train_subjects & test_subjects)


def test_heldout_template_option():
    tasks = build_tasks(build_world(0, "tiny"), TaskSetConfig(n_train=20, n_dev=5, n_test=5, heldout_template=True))
    for t in tasks:
        train_t = {ex.meta["template"] for ex in t.train}
        test_t = {ex.meta["template"] for ex in t.test}
        assert not (train_t & test_t), t.name


def test_tasks_are_deterministic():
    w = build_world(5, "tiny")
    cfg = TaskSetConfig(n_train=10, n_dev=3, n_test=3)
    a = [[ex.to_dict() for ex in t.train + t.test] for t in build_tasks(w, cfg)]
    b = [[ex.to_dict() for ex in t.train + t.test] for t in build_tasks(build_world(5, "tiny"), cfg)]
    assert a == b
