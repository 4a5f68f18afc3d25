"""The dev-sweep tool's variant syntax (the training itself is the demo's, tested there)."""
import pytest

from shoulders.experiments.sweep import parse_recursion_variant, parse_variant


def test_parse_variant_splits_lr_from_module_fields():
    assert parse_variant("idpt:lr=3e-3,prompt_length=32,shared_prompt=true") == (
        "idpt", {"lr": 0.003}, {"prompt_length": 32, "shared_prompt": True})
    # booleans are booleans: the string "false" would be truthy
    assert parse_variant("idpt:shared_prompt=False")[2] == {"shared_prompt": False}
    assert parse_variant("prompt_tuning:") == ("prompt_tuning", {}, {})


@pytest.mark.parametrize("bad, message", [
    ("lora:lr=1", "unknown method 'lora'"),
    ("idpt:lr", "'lr' is not key=value"),
])
def test_parse_variant_refuses_typos(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_variant(bad)


def test_parse_recursion_variant_routes_settings_and_nested_neural_keys():
    top, neural = parse_recursion_variant("neural:steps=400,neural_lr=0.03,connector.layers=2,connect=last")
    assert top == {"steps": 400, "neural_lr": 0.03}
    assert neural == {"connector": {"layers": 2}, "connect": "last"}
    assert parse_recursion_variant("textual:temperature=0.5") == ({"temperature": 0.5}, {})
    assert parse_recursion_variant("single:backbone=toy-large,lr_grid=[0.1],single_steps=1000") == \
        ({"backbone": "toy-large", "lr_grid": [0.1], "single_steps": 1000}, {})
    with pytest.raises(ValueError, match="backbone='toy-huge'"):
        parse_recursion_variant("single:backbone=toy-huge")
    with pytest.raises(ValueError, match="'connect' is not a RecursionSettings field"):
        parse_recursion_variant("single:connect=last")
    with pytest.raises(ValueError, match="expected 'neural:key=value"):
        parse_recursion_variant("gated:steps=1")


def test_select_tasks_keeps_the_order_asked_and_refuses_unknown_names():
    from types import SimpleNamespace

    from shoulders.experiments.sweep import select_tasks

    tasks = [SimpleNamespace(name=n) for n in ("a", "b", "c")]
    assert select_tasks(tasks, None) == tasks
    assert [t.name for t in select_tasks(tasks, ["c", "a"])] == ["c", "a"]
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['z'\]; the mixture has \['a', 'b', 'c'\]"):
        select_tasks(tasks, ["a", "z"])


def test_variant_values_may_be_json_lists_with_commas():
    from shoulders.experiments.sweep import _pairs

    got = list(_pairs("v", "corpus.reading_passages=[2,3],corpus.n_passes=40"))
    assert got == [("corpus.reading_passages", [2, 3]), ("corpus.n_passes", 40)]
