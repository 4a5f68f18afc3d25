from shoulders.toyworld.world import RELATIONS, WorldConfig, build_world


def test_same_seed_same_world_other_seed_other_world():
    assert build_world(3, "tiny").to_dict() == build_world(3, "tiny").to_dict()
    assert build_world(3, "tiny").to_dict() != build_world(4, "tiny").to_dict()


def test_sizes_follow_the_config():
    w = build_world(0, "quick")
    cfg = WorldConfig.quick()
    assert len(w.of_kind("person")) == cfg.n_people
    assert len(w.of_kind("product")) == cfg.n_products


def test_names_are_unique_and_never_inside_one_another():
    w = build_world(0, "full")
    names = [e.name for e in w.entities.values()]
    assert len(names) == len(set(names))
    stems = {e.name.split()[0].lower() for e in w.entities.values() if e.kind not in ("person", "university")}
    assert not [(a, b) for a in stems for b in stems if a != b and a in b]


def test_relations_are_functional_and_consistent():
    w = build_world(1, "quick")
    keys = [(f.subject, f.relation) for f in w.facts]
    assert len(keys) == len(set(keys))
    for f in w.facts:
        subj_kind, obj_kind = RELATIONS[f.relation]
        assert w.entities[f.subject].kind == subj_kind
        assert f.is_literal or w.entities[f.object].kind == obj_kind
    for country in w.of_kind("country"):  # a capital lies in its own country
        assert w.get(w.get(country.id, "capital"), "located_in") == country.id
    for company in w.of_kind("company"):  # founders work for what they founded; every firm makes something
        assert w.get(w.get(company.id, "founded_by"), "works_for") == company.id
        assert w.inverse(company.id, "made_by")


def test_world_roundtrips_through_dict():
    from shoulders.toyworld.world import World

    w = build_world(2, "tiny")
    assert World.from_dict(w.to_dict()).to_dict() == w.to_dict()
