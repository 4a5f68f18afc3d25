"""Same seed, same bytes, in a fresh process too: the backbone cache key hashes the
corpus text, so any dependence on Python's per-process hash seed would retrain
backbones on every run."""
import os
import subprocess
import sys

SCRIPT = """
import hashlib, json
from shoulders.toyworld import ToyworldConfig, load_world_data
from shoulders.toyworld.corpus import CorpusConfig
from shoulders.toyworld.tasks import TaskSetConfig
from shoulders.toyworld.world import WorldConfig
cfg = ToyworldConfig(world=WorldConfig.tiny(), corpus=CorpusConfig(n_passes=2),
                     tasks=TaskSetConfig(n_train=20, n_dev=5, n_test=5))
d = load_world_data(seed=0, config=cfg)
blob = json.dumps([d.corpus, [[e.to_dict() for e in t.train + t.test] for t in d.tasks],
                   [vars(q) for q in d.odqa.test], [p.to_dict() for p in d.odqa.passages],
                   [e.to_dict() for e in d.closedbook.test]], sort_keys=True)
print(hashlib.sha256(blob.encode()).hexdigest())
"""


def _digest(hash_seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_generated_data_does_not_depend_on_the_process():
    assert _digest("1") == _digest("2")
