"""Extract and run the fenced code blocks of README.md and docs/*.md (tests/test_doc_blocks.py).

The conventions, also described in docs/README.md ("The docs are tested"):

- Every block fenced as `bash` or `python` runs, in page order: README.md first, then
  docs/*.md by name, all in one temporary directory (the walkthrough directory), so a
  block may use what an earlier block of the same or an earlier page made (the README's
  trained module is served in docs/serving.md). A bash block runs with `set -e -o pipefail`,
  a python block as a script; each must exit 0 within its time limit.
- `<!-- doc-test: skip -->` on the line above a block: not run. The reason must be visible
  on the page, as the first line after the block: `*Not run by the docs test: REASON.*`.
- `<!-- doc-test: file PATH -->` above a block of any language: its text (after the
  substitutions) is written to PATH in the walkthrough directory before the first block of
  its page runs (the README's YAML config, lm_eval's task file).
- `<!-- doc-test: continues -->` above a python block: it continues the page's previous
  python block (the README's second example uses the first one's names), so it runs as
  the two texts, one after the other, in one script.
- Blocks of other languages (yaml, json, text, a tree) are not run.
- A block whose text, after the substitutions, is the same as one that already ran is not
  run again: it gets that block's result (docs/demo.md repeats the README's commands).

What runs is the block after SUBSTITUTIONS (hub ids -> tiny local models built by the
test, sizes -> small), in a directory that starts with FIXTURES; tests/doc_shim/ shrinks the
toy world and the experiments' presets in every Python process the blocks start.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"bash", "python"}
SHIM = Path(__file__).resolve().parent / "doc_shim"
FORK = Path(__file__).resolve().parent / "doc_fork.py"
MARKER = re.compile(r"^<!--\s*doc-test:\s*(?P<kind>[\w-]+)\s*(?P<arg>.*?)\s*-->\s*$")
NOTE = re.compile(r"^\*Not run by the docs test: (?P<reason>.+)\*\s*$")
TIMEOUT_S = 300


@dataclasses.dataclass
class Block:
    page: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None = None  # "skip" | "file" | "continues"
    arg: str = ""  # file: the path; skip: the visible reason

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def extract(pages=PAGES) -> list[Block]:
    """Every fenced block of the pages, with its marker; raises on a malformed marker."""
    blocks = []
    for page in pages:
        rel = page.relative_to(ROOT).as_posix()
        lines = page.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            m = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
            if not m:
                if MARKER.match(lines[i].strip()) and not _is_fence(lines, i + 1):
                    raise ValueError(f"{rel}:{i + 1}: a doc-test marker must be right above a fenced block")
                i += 1
                continue
            end = i + 1
            while end < len(lines) and not re.match(r"^\s*```\s*$", lines[end]):
                end += 1
            if end == len(lines):
                raise ValueError(f"{rel}:{i + 1}: unclosed fence")
            indent = len(m.group(1))
            block = Block(rel, i + 1, m.group(2), "\n".join(x[indent:] for x in lines[i + 1:end]) + "\n")
            prev = lines[i - 1].strip() if i else ""
            mk = MARKER.match(prev)
            if mk:
                block.marker, block.arg = mk.group("kind"), mk.group("arg")
                if block.marker == "skip":
                    after = next((x for x in lines[end + 1:] if x.strip()), "")
                    note = NOTE.match(after.strip())
                    if not note or block.arg:
                        raise ValueError(f"{block.id}: a skipped block needs `<!-- doc-test: skip -->` above it and "
                                         f"the visible line `*Not run by the docs test: REASON.*` right after it")
                    block.arg = note.group("reason").rstrip(".")
                elif block.marker == "file":
                    if not block.arg or block.arg.startswith("/") or ".." in block.arg:
                        raise ValueError(f"{block.id}: `doc-test: file PATH` needs a relative path")
                elif block.marker == "continues":
                    earlier = [b for b in blocks if b.page == rel and b.lang == block.lang]
                    if block.lang != "python" or not earlier:
                        raise ValueError(f"{block.id}: `doc-test: continues` needs an earlier python block on its page")
                    block.arg = earlier[-1].id
                else:
                    raise ValueError(f"{block.id}: unknown doc-test marker {block.marker!r} (skip | file | continues)")
            blocks.append(block)
            i = end + 1
    return blocks


def _is_fence(lines, i) -> bool:
    return i < len(lines) and lines[i].lstrip().startswith("```")


# --------------------------------------------------------------------------- substitutions
# (pattern, replacement, why). {gpt2} {llama} {chat} {t5} {data} {repo} {port} {port2} are filled
# in by the runner. Applied, in this order, to every bash, python and `file` block.
SUBSTITUTIONS: list[tuple[str, str, str]] = [
    (r"(?<![\w/.-])gpt2(?![\w/.-])", "{gpt2}", "hub id gpt2 -> a tiny random GPT-2 (2 layers, 32 wide)"),
    (r"/models/Llama-[\w.-]+", "{llama}", "a local Llama checkpoint -> a tiny random Llama"),
    (r"Qwen/Qwen2\.5-0\.5B-Instruct", "{chat}", "an instruct model -> a tiny random Llama with a chat template"),
    (r"/models/t5-base", "{t5}", "a T5 checkpoint -> a tiny random T5 encoder"),
    (r"/path/to/data", "{data}", "the real tasks' data directory -> tiny files in the same formats"),
    (r"make quick-demo", "shoulders demo --quick", "the Makefile's recipe (checked by the test)"),
    (r'make demo DEMO_ARGS="([^"]*)"', r"shoulders demo --quick \1", "the recipe, at --quick size"),
    (r"make demo\b", "shoulders demo --quick", "the recipe, at --quick size"),
    (r"\.venv/bin/shoulders demo", "shoulders demo --quick", "at --quick size"),
    (r"make test\b", "make -n -C {repo} test", "a dry run: this test is part of what `make test` runs"),
    (r'pip install -e "\.\[eval\]"', 'python -c "import lm_eval"',
     "installs nothing: the [dev] extra already has lm-eval (checked instead)"),
    (r"(?<=[:,.])steps=\d+", "steps=2", "steps in `--set train.steps=N` and in sweep variants -> 2"),
    (r"127\.0\.0\.1:8000", "127.0.0.1:{port}", "the server's port -> a free one (`shoulders serve` gets `--port` too)"),
    (r"127\.0\.0\.1:8001", "127.0.0.1:{port2}", "a second server's port -> another free one"),
]


def substitute(text: str, values: dict[str, str]) -> str:
    for pattern, repl, _ in SUBSTITUTIONS:
        text = re.sub(pattern, lambda m, r=repl: m.expand(r.format(**values)), text)
    return text


# The shoulders YAML configs a block trains from (configs/*.yaml copies and `file` blocks
# with a `method:` key) are shrunk the same way: at most STEPS steps, evaluated every
# EVAL_EVERY steps on at most EVAL_MAX examples, Connector pre-training of at most 2 steps.
STEPS, EVAL_EVERY, EVAL_MAX = 4, 2, 8


def shrink_config(text: str) -> str:
    import yaml

    cfg = yaml.safe_load(text)
    if not isinstance(cfg, dict) or "method" not in cfg:
        return text
    train = cfg.setdefault("train", {})
    train["steps"] = min(train.get("steps", STEPS), STEPS)
    train["eval_every"] = min(train.get("eval_every", EVAL_EVERY), EVAL_EVERY)
    train["eval_max_examples"] = min(train.get("eval_max_examples") or EVAL_MAX, EVAL_MAX)
    pre = (cfg.get("module") or {}).get("lm_pretrain")
    if isinstance(pre, dict) and pre.get("steps"):
        pre["steps"] = min(pre["steps"], 2)
    return yaml.safe_dump(cfg, sort_keys=False)


# --------------------------------------------------------------------------- fixtures
FIXTURES = """\
configs/, tests/fixtures/   copies of the repository's (the docs run from the repository root), shrunk
data/sst2_{train,dev,test}.jsonl   the README's sentiment task: {"input", "target"} per line
data/dev.jsonl              lm_eval's task file in docs/training.md: the same, with choices
CONFIG.yaml                 the "your config" of docs/training.md: prompt tuning on the tiny Llama
passages.jsonl, psgs_w100.tsv, questions.jsonl   docs/reader.md's corpus files, 120 passages
$SHOULDERS_DATA             squad-v1.1-dev.json and the four real-task dev files, tiny
$SHOULDERS_CACHE            an empty toy-backbone cache for this run
"""

POS = "great wonderful a joy loved fun moving charming".split()
NEG = "dull awful boring a mess hated lifeless bleak".split()


def _reviews(rng: random.Random, n: int, choices: bool) -> list[dict]:
    rows = []
    for _ in range(n):
        good = rng.random() < 0.5
        words = rng.sample(POS if good else NEG, 2)
        row = {"input": f"the film was {words[0]} and {words[1]}", "target": "positive" if good else "negative"}
        if choices:
            row["choices"] = ["negative", "positive"]
        rows.append(row)
    return rows


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


PEOPLE = "Hamlet Ophelia Lear Macbeth Othello Portia Viola Prospero Miranda Puck".split()
PLACES = "Paris Rome Berlin Madrid Vienna Prague Lisbon Dublin Oslo Athens Cairo Lima".split()


def _passages(rng: random.Random, n: int = 120) -> list[dict]:
    out = [{"id": "p0", "title": "Hamlet", "text": "Hamlet is a tragedy written by William Shakespeare around 1600."}]
    for i in range(1, n):
        who, where = rng.choice(PEOPLE), rng.choice(PLACES)
        out.append({"id": f"p{i}", "title": who, "text": f"{who} was born in {where} and lived in {rng.choice(PLACES)}."})
    return out


def write_fixtures(work: Path, data: Path, models: dict[str, Path]) -> None:
    rng = random.Random(0)
    for sub in ("configs", "tests/fixtures"):
        shutil.copytree(ROOT / sub, work / sub)
    for cfg in (work / "configs").glob("*.yaml"):
        cfg.write_text(shrink_config(cfg.read_text(encoding="utf-8")), encoding="utf-8")
    for split, n in (("train", 24), ("dev", 12), ("test", 12)):
        _jsonl(work / "data" / f"sst2_{split}.jsonl", _reviews(rng, n, choices=False))
    _jsonl(work / "data" / "dev.jsonl", _reviews(rng, 12, choices=True))
    (work / "CONFIG.yaml").write_text(shrink_config(json.dumps({
        "method": "prompt_tuning", "backbone": {"name_or_path": str(models["llama"]), "device": "cpu"},
        "module": {"num_virtual_tokens": 4, "text": {"template": "Review: {input}\nSentiment:"}},
        "tasks": [{"name": "sst2", "train": "data/sst2_train.jsonl", "dev": "data/sst2_dev.jsonl",
                   "metric": "accuracy", "choices": ["negative", "positive"]}],
        "train": {"batch_size": 4}, "output_dir": "runs/config_yaml"})), encoding="utf-8")
    passages = _passages(rng)
    _jsonl(work / "passages.jsonl", passages)
    (work / "psgs_w100.tsv").write_text("id\ttext\ttitle\n" + "".join(
        f"{p['id']}\t{p['text']}\t{p['title']}\n" for p in passages), encoding="utf-8")
    _jsonl(work / "questions.jsonl", [{"id": f"q{i}", "question": f"where was {who} born?"}
                                      for i, who in enumerate(PEOPLE)])
    _real_task_files(data, rng)
    _squad(data / "squad-v1.1-dev.json", rng)


def _real_task_files(data: Path, rng: random.Random, n: int = 40) -> None:
    data.mkdir(parents=True, exist_ok=True)
    reviews = _reviews(rng, n, choices=False)
    (data / "sst2-dev.tsv").write_text("sentence\tlabel\n" + "".join(
        f"{r['input']} \t{int(r['target'] == 'positive')}\n" for r in reviews), encoding="utf-8")
    (data / "mrpc-dev.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + "".join(
        f"{i % 2}\t{i}\t{i + 1000}\t{r['input']}\t{reviews[(i + i % 2) % n]['input']}\n"
        for i, r in enumerate(reviews)), encoding="utf-8")
    _jsonl(data / "rte-dev.superglue.jsonl", [
        {"premise": r["input"], "hypothesis": "the film was good", "idx": i,
         "label": "entailment" if r["target"] == "positive" else "not_entailment"} for i, r in enumerate(reviews)])
    _jsonl(data / "boolq-dev.superglue.jsonl", [
        {"question": "was the film good", "passage": r["input"], "idx": i,
         "label": r["target"] == "positive"} for i, r in enumerate(reviews)])


def _squad(path: Path, rng: random.Random, articles: int = 6) -> None:
    data = []
    for a in range(articles):
        paragraphs = []
        for p in range(3):
            facts = [(rng.choice(PEOPLE) + str(a), rng.choice(PLACES)) for _ in range(3)]
            context = " ".join(f"{who} was born in {where}." for who, where in facts)
            qas = [{"id": f"{a}-{p}-{k}", "question": f"Where was {who} born?",
                    "answers": [{"text": where, "answer_start": context.index(f"{who} was born in {where}") +
                                 len(f"{who} was born in ")}]} for k, (who, where) in enumerate(facts)]
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": f"Article {a}", "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")


def build_models(root: Path) -> dict[str, Path]:
    """The tiny random models the hub ids stand for (tests/helpers.py's, plus a chat
    template and a T5 encoder)."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    from tests.helpers import build_tiny_backbone, train_tokenizer

    out = {name: build_tiny_backbone(root / name, family)
           for name, family in (("gpt2", "gpt2"), ("llama", "llama"), ("chat", "llama"))}
    tok = AutoTokenizer.from_pretrained(out["chat"])
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tok.save_pretrained(out["chat"])
    t5 = root / "t5"
    tok = train_tokenizer(t5)
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(t5)
    out["t5"] = t5
    return out


# --------------------------------------------------------------------------- running
# Sourced before every bash block: `shoulders serve` starts in the background on the test's
# port (it never returns by itself), waits until /health answers, and replaces the server
# an earlier block started; the runner stops it when the page ends.
PREAMBLE = r"""
shoulders() {
  if [ "${1:-}" = serve ]; then _doctest_serve "$@"
  elif [ -n "${DOCTEST_FORK_SOCKET:-}" ]; then "$DOCTEST_PYTHON" "$DOCTEST_FORK" shoulders "$@"
  else command shoulders "$@"; fi
}
python() {
  if [ "${1:-}" = -c ] && [ -n "${DOCTEST_FORK_SOCKET:-}" ]; then shift; "$DOCTEST_PYTHON" "$DOCTEST_FORK" code "$@"
  else command python "$@"; fi
}
_doctest_serve() {  # on the port its --port names (default 8000), mapped to a free one
  local port=8000 prev="" a
  for a in "$@"; do [ "$prev" = --port ] && port=$a; prev=$a; done
  case "$port" in 8000) port=$DOCTEST_PORT;; 8001) port=$DOCTEST_PORT2;; esac
  local pidfile="$DOCTEST_DIR/serve-$port.pid" log="$DOCTEST_DIR/serve-$port.log"
  if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/health" || break; sleep 0.1; done
  if [ -n "${DOCTEST_FORK_SOCKET:-}" ]; then
    "$DOCTEST_PYTHON" "$DOCTEST_FORK" shoulders "$@" --port "$port" </dev/null >"$log" 2>&1 &
  else
    command shoulders "$@" --port "$port" </dev/null >"$log" 2>&1 &
  fi
  local pid=$!
  echo "$pid" >"$pidfile"
  for _ in $(seq 1 600); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/health"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$log"; return 1; fi
    sleep 0.2
  done
  echo "shoulders serve did not answer /health"; return 1
}
"""


@dataclasses.dataclass
class Result:
    block: Block
    status: str  # passed | failed | skipped | same
    seconds: float = 0.0  # wall
    cpu: float = 0.0  # user + system seconds of the processes it started (that waited for)
    output: str = ""
    ran_as: str = ""
    same_as: str = ""


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runner:
    """Runs the blocks in order on demand (`result(i)` first runs every block before i)."""

    def __init__(self, blocks: list[Block], tmp: Path):
        self.blocks, self.tmp = blocks, tmp
        self.work, self.data, self.scripts = tmp / "walkthrough", tmp / "data", tmp / "scripts"
        for d in (self.work, self.scripts):
            d.mkdir(parents=True)
        self.models = build_models(tmp / "models")
        write_fixtures(self.work, self.data, self.models)
        self.port, self.port2 = free_port(), free_port()
        self.values = {**{k: str(v) for k, v in self.models.items()}, "data": str(self.data), "repo": str(ROOT),
                       "port": str(self.port), "port2": str(self.port2)}
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                    "PYTHONPATH": str(SHIM), "SHOULDERS_CACHE": str(tmp / "cache"), "SHOULDERS_DATA": str(self.data),
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                    "HF_DATASETS_CACHE": str(tmp / "hf_datasets"), "MPLCONFIGDIR": str(tmp / "matplotlib"),
                    "DOCTEST_DIR": str(self.scripts), "DOCTEST_PORT": str(self.port),
                    "DOCTEST_PORT2": str(self.port2), "DOCTEST_PYTHON": sys.executable, "DOCTEST_FORK": str(FORK),
                    "DOCTEST_SHOULDERS": str(Path(sys.executable).parent / "shoulders"), "NO_COLOR": "1",
                    # one thread: the models are tiny, and two OpenMP threads on busy cores spin (50 steps of
                    # the tiny GPT-2 took 24 s with two, 0.5 s with one, on a loaded 2-core machine)
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.env.pop("SHOULDERS_API_KEY", None)
        self.env.pop("DOCTEST_FORK_SOCKET", None)
        self.results: list[Result] = []
        self.page: str | None = None
        self.fork = None
        if os.environ.get("DOCTEST_FORK", "1") != "0":
            self._start_fork_server()

    def _start_fork_server(self) -> None:
        sock = self.tmp / "fork.sock"
        self.fork = subprocess.Popen([sys.executable, str(FORK), "serve", str(sock)], env=self.env, cwd=self.work,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                                     stderr=open(self.scripts / "fork-server.log", "w"), start_new_session=True)
        if self.fork.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the fork server did not start: see {self.scripts / 'fork-server.log'}")
        self.env["DOCTEST_FORK_SOCKET"] = str(sock)

    def close(self) -> None:
        self.stop_server()
        if self.fork is not None:
            self.fork.terminate()
            self.fork.wait(10)
            self.fork = None

    def result(self, index: int) -> Result:
        while len(self.results) <= index:
            self.results.append(self._run(self.blocks[len(self.results)]))
        return self.results[index]

    def _run(self, block: Block) -> Result:
        if block.page != self.page:  # a page's files are there before its first block runs
            self.stop_server()
            self.page = block.page
            for b in self.blocks:
                if b.page == block.page and b.marker == "file":
                    path = self.work / b.arg
                    path.parent.mkdir(parents=True, exist_ok=True)
                    text = substitute(b.text, self.values)
                    path.write_text(shrink_config(text) if b.lang == "yaml" else text, encoding="utf-8")
        if block.marker == "skip":
            return Result(block, "skipped", output=block.arg)
        text = substitute(block.text, self.values)
        if block.marker == "file":
            return Result(block, "passed", ran_as=text)
        if block.marker == "continues":
            text = next(r.ran_as for r in self.results if r.block.id == block.arg) + "\n" + text
        if block.lang not in RUN:
            return Result(block, "skipped", output=f"a {block.lang or 'plain'} block is not run")
        for earlier in self.results:
            if earlier.ran_as == text and earlier.block.lang == block.lang and earlier.status in ("passed", "failed"):
                return dataclasses.replace(earlier, block=block, status="same" if earlier.status == "passed" else
                                           "failed", same_as=earlier.block.id, seconds=0.0)
        name = f"{len(self.results):03d}_{Path(block.page).stem}_{block.line}"
        if block.lang == "bash":
            script = self.scripts / f"{name}.sh"
            script.write_text(PREAMBLE + "\n" + text, encoding="utf-8")
            cmd = ["bash", "-e", "-o", "pipefail", str(script)]
        else:
            script = self.scripts / f"{name}.py"
            script.write_text(text, encoding="utf-8")
            cmd = [sys.executable, *([str(FORK), "python"] if self.fork else []), str(script)]
        t0, c0 = time.perf_counter(), self._cpu()
        proc = subprocess.Popen(cmd, cwd=self.work, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=TIMEOUT_S)
            status = "passed" if proc.returncode == 0 else "failed"
            if proc.returncode:
                output += f"\n[exit status {proc.returncode}]"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # bash and the clients it started; the fork server ends their children
            output, _ = proc.communicate()
            status, output = "failed", output + f"\n[timed out after {TIMEOUT_S} s]"
        result = Result(block, status, time.perf_counter() - t0, self._cpu() - c0, output, text)
        script.with_suffix(".out").write_text(output, encoding="utf-8")
        with open(self.scripts / "timings.tsv", "a", encoding="utf-8") as f:
            f.write(f"{block.id}\t{status}\t{result.seconds:.1f}\t{result.cpu:.1f}\n")
        return result

    def _cpu(self) -> float:
        """CPU seconds of the processes the blocks started: the waited ones, and the fork server's children."""
        log = self.scripts / "fork-cpu.log"
        return _children_cpu() + (sum(map(float, log.read_text().split())) if log.exists() else 0.0)

    def stop_server(self) -> None:
        """Stop the servers a page's `shoulders serve` started (and waits until they are gone)."""
        for pid_file in self.scripts.glob("serve-*.pid"):
            text = pid_file.read_text().strip()
            pid_file.unlink()
            if not text:
                continue
            pid = int(text)
            for sig, wait in ((signal.SIGTERM, 100), (signal.SIGKILL, 20)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                for _ in range(wait):
                    try:
                        os.kill(pid, 0)
                        time.sleep(0.1)
                    except ProcessLookupError:
                        break
                else:
                    continue
                break
        for port in (self.port, self.port2):  # until the servers (the fork server's children) are gone
            for _ in range(100):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)):
                        break
                time.sleep(0.1)

    def summary(self) -> str:
        code = [r for r in self.results if r.block.lang in RUN]
        by = {s: [r for r in code if r.status == s] for s in ("passed", "failed", "same", "skipped")}
        files = [r for r in self.results if r.block.marker == "file" and r.block.lang not in RUN]
        lines = [f"docs test: {len(code)} bash/python blocks in README.md and docs/*.md: {len(by['passed'])} ran and "
                 f"passed, {len(by['failed'])} failed, {len(by['same'])} same text as one that ran, "
                 f"{len(by['skipped'])} not run ({sum(r.seconds for r in self.results):.0f} s); "
                 f"{len(files)} other blocks written as files"]
        lines += [f"  not run: {r.block.id}: {r.output}" for r in by["skipped"]]
        lines += [f"  failed: {r.block.id}" for r in by["failed"]]
        lines += [f"  same as {r.same_as}: {r.block.id}" for r in by["same"]]
        slow = sorted(self.results, key=lambda r: -r.seconds)[:5]
        lines.append("  slowest: " + ", ".join(f"{r.block.id} {r.seconds:.0f} s" for r in slow))
        return "\n".join(lines)
