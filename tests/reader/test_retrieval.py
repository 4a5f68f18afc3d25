import json
import warnings

import numpy as np
import pytest
import rank_bm25

from shoulders.reader.retrieval import (
    BM25Config, BM25Retriever, FaissConfig, HybridConfig, HybridRetriever,
    build_index, load_hits, load_index, query_file, save_index,
)
from shoulders.reader.retrieval.base import passage_text
from shoulders.reader.retrieval.faiss_index import build_faiss_index, index_nbytes, search

QUERIES = ["capital of Italy", "which river flows into the Mediterranean", "board game with 64 squares", "zzzz"]


@pytest.fixture(scope="module")
def bm25(passages):
    r = BM25Retriever()
    r.build(passages, show_progress=False)
    return r


def test_bm25_finds_the_obvious_passage(bm25):
    hits = bm25.search(QUERIES, 3)
    assert [h[0].passage_id for h in hits[:3]] == ["p2", "p5", "p10"]
    assert hits[3] == []  # no shared term: zero-score passages are not returned
    assert all(a.score >= b.score for row in hits for a, b in zip(row, row[1:]))


@pytest.mark.parametrize("kind", ["bm25", "dense", "hybrid"])
def test_save_load_gives_identical_results(tmp_path, kind, bm25, dense):
    r = {"bm25": bm25, "dense": dense, "hybrid": HybridRetriever(HybridConfig(fusion="minmax"), bm25, dense)}[kind]
    save_index(r, tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["kind"] == kind and meta["format_version"] == 1 and meta["n_passages"] == len(r)
    for mmap in (False, True):
        loaded = load_index(tmp_path / "idx", mmap=mmap)
        assert type(loaded) is type(r)
        assert loaded.search(QUERIES, 5) == r.search(QUERIES, 5)
    if kind == "hybrid":  # query-time knobs can be changed at load
        assert load_index(tmp_path / "idx", fusion="rrf", nprobe=4).config.fusion == "rrf"
    if kind == "bm25":
        with pytest.raises(TypeError, match="unknown option"):
            load_index(tmp_path / "idx", nprobe=4)


def test_bm25_matches_rank_bm25_okapi(passages):
    # bm25s's own parity test pairs method="atire" with idf_method="robertson" against
    # BM25Okapi(epsilon=0): both then clip negative idf to 0 and use tf*(k1+1)/(tf+k1*norm).
    cfg = BM25Config(k1=1.2, b=0.6, method="atire", idf_method="robertson", stopwords=None)
    ours = BM25Retriever(cfg)
    ours.build(passages, show_progress=False)
    ref = rank_bm25.BM25Okapi(ours.tokenize([passage_text(p) for p in passages]), k1=1.2, b=0.6, epsilon=0.0)
    for q in QUERIES + ["the capital of the Roman Empire", "is the a of"]:
        expected = ref.get_scores(ours.tokenize([q])[0])
        np.testing.assert_allclose(ours.scores(q), expected, rtol=1e-5, atol=1e-6)
        ranked = [h.passage_id for h in ours.search([q], len(passages))[0]]
        order = [passages[i].id for i in np.argsort(-expected, kind="stable") if expected[i] > 0]
        assert sorted(ranked) == sorted(order)
        assert [expected[int(pid[1:])] for pid in ranked] == sorted(expected[expected > 0], reverse=True)


def test_dense_long_query_is_truncated_with_a_warning(dense):
    long_query = "where is the capital of France " * 100
    with pytest.warns(UserWarning, match="max_seq_length"):
        hits = dense.search([long_query, "capital of France"], 2)
    assert len(hits) == 2 and len(hits[0]) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dense.search(["capital of France"], 1)  # a short query does not warn


def test_dense_finds_semantic_match(dense):
    assert dense.search(["What pet is related to wolves?"], 1)[0][0].passage_id == "p4"


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw", "ivfpq"])
def test_faiss_index_types_on_random_vectors(index_type):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 32)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cfg = FaissConfig(index_type=index_type, nlist=16, nprobe=16, pq_m=8, pq_nbits=6, hnsw_m=16)
    index = build_faiss_index(x, cfg)
    scores, ids = search(index, x[:20], 5)
    assert ids.shape == (20, 5) and index.ntotal == 2000 and index_nbytes(index) > 0
    if index_type != "ivfpq":  # nprobe = nlist and a wide HNSW beam: exact on these
        assert (ids[:, 0] == np.arange(20)).all()
    else:
        assert (ids[:, 0] == np.arange(20)).mean() > 0.5


@pytest.mark.parametrize("refine", ["Flat", "SQ8"])
def test_refine_rescores_pq_candidates(refine, tmp_path):
    """IVF-PQ's coarse codes miss true neighbours; re-scoring k_factor*k candidates with
    finer vectors recovers them, and the wrapped index keeps nprobe / k_factor on reload."""
    import faiss

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 32)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:50] + 0.05 * rng.normal(size=(50, 32)).astype("float32")
    exact = search(build_faiss_index(x, FaissConfig(index_type="flat")), q, 10)[1]
    common = dict(index_type="ivfpq", nlist=16, nprobe=16, pq_m=8, pq_nbits=6)
    recall = {}
    for name, cfg in {"pq": FaissConfig(**common), "refined": FaissConfig(**common, refine=refine, k_factor=8)}.items():
        ids = search(build_faiss_index(x, cfg), q, 10)[1]
        recall[name] = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ids, exact)])
    assert recall["refined"] > recall["pq"] + 0.2 and recall["refined"] >= 0.85, recall
    cfg = FaissConfig(**common, refine=refine, k_factor=8)
    assert cfg.factory_string(3000).endswith(",RFlat" if refine == "Flat" else f",Refine({refine})")
    index = build_faiss_index(x, cfg)
    faiss.write_index(index, str(tmp_path / "f.index"))
    back = faiss.read_index(str(tmp_path / "f.index"))
    from shoulders.reader.retrieval.faiss_index import set_search_params

    set_search_params(back, cfg)
    assert back.k_factor == 8 and faiss.extract_index_ivf(back).nprobe == 16
    assert np.array_equal(search(back, q, 10)[1], search(index, q, 10)[1])


def test_refine_rejects_unknown_kind():
    with pytest.raises(ValueError, match=r"refine[\s\S]*input_value='PQ4'"):
        FaissConfig(index_type="ivfpq", refine="PQ4")


def test_hybrid_search_uses_both(bm25, dense):
    h = HybridRetriever(HybridConfig(fusion="rrf", depth=10), bm25, dense)
    hits = h.search(["What pet is related to wolves?", "capital of Italy"], 3)
    assert hits[0][0].passage_id == "p4" and hits[1][0].passage_id == "p2"


def test_build_query_file_and_hits_rows(tmp_path, corpus_file):
    build_index(corpus_file, "bm25", tmp_path / "idx", k1=1.2)
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "a", "question": "capital of Italy"}\n{"question": "chess board"}\n')
    n = query_file(load_index(tmp_path / "idx"), questions, tmp_path / "hits.jsonl", k=2, show_progress=False)
    assert n == 2
    rows = [json.loads(line) for line in (tmp_path / "hits.jsonl").read_text().splitlines()]
    assert rows[0]["id"] == "a" and rows[1]["id"] == "1" and rows[0]["hits"][0]["id"] == "p2"
    assert set(rows[0]["hits"][0]) == {"id", "score"}
    assert load_hits(tmp_path / "hits.jsonl")["a"][0].passage_id == "p2"


def test_build_rejects_unknown_option_before_work(tmp_path, corpus_file):
    with pytest.raises(TypeError, match="unknown option"):
        build_index(corpus_file, "bm25", tmp_path / "idx", nprobe=3)
    assert not (tmp_path / "idx").exists()


def test_load_index_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.json"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text('{"format_version": 1, "kind": "sparse", "config": {}}')
    with pytest.raises(ValueError, match=r"index\.json: unknown kind 'sparse'"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text('{"format_version": 99, "kind": "bm25", "config": {}}')
    with pytest.raises(ValueError, match=r"index\.json: format_version 99"):
        load_index(tmp_path)


def test_cli_build_and_query(tmp_path, corpus_file, capsys):
    import argparse

    from shoulders.cli.index_cmd import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["index", "build", "--corpus", str(corpus_file), "--kind", "bm25", "--out", str(tmp_path / "i")])
    assert args.func(args) == 0
    args = parser.parse_args(["index", "query", str(tmp_path / "i"), "capital of Italy", "-k", "2"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "p2" in out and "Rome" in out


def test_cli_dense_refine_round_trip(tmp_path, corpus_file, capsys):
    """--refine is saved with the index; --k-factor overrides it at query time."""
    import argparse

    from shoulders.cli.index_cmd import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["index", "build", "--corpus", str(corpus_file), "--kind", "dense", "--out",
                              str(tmp_path / "d"), "--refine", "SQ8", "--k-factor", "2"])
    assert args.func(args) == 0
    saved = json.loads((tmp_path / "d" / "index.json").read_text())
    assert saved["config"]["faiss"]["refine"] == "SQ8" and saved["config"]["faiss"]["k_factor"] == 2
    assert load_index(tmp_path / "d", k_factor=3).index.k_factor == 3
    assert load_index(tmp_path / "d").search(["What pet is related to wolves?"], 1)[0][0].passage_id == "p4"
