"""No code from data: the source never unpickles, never evals, never trusts remote code."""
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "shoulders"
PATTERNS = {
    "pickle": re.compile(r"^\s*(import pickle|from pickle)|pickle\.loads?\(", re.M),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"),
    "trust_remote_code=True": re.compile(r"trust_remote_code\s*=\s*True"),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\("),
    "yaml.load (unsafe)": re.compile(r"yaml\.load\((?!.*SafeLoader)"),
}


def test_source_scan():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10
    hits = []
    for f in files:
        text = f.read_text()
        for name, pattern in PATTERNS.items():
            for m in pattern.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                hits.append(f"{f.relative_to(SRC)}:{line}: {name}")
    assert hits == []


def test_trust_remote_code_defaults_off():
    import inspect

    from shoulders.backbone import FrozenLM
    from shoulders.train.config import BackboneConfig

    assert inspect.signature(FrozenLM.from_pretrained).parameters["trust_remote_code"].default is False
    assert BackboneConfig(name_or_path="x").trust_remote_code is False
