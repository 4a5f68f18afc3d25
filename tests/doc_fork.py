"""A fork server for the docs test: the `shoulders` commands and python blocks it runs start
in a fraction of a second instead of spending 3-4 s each importing torch, transformers and
shoulders (tests/docblocks.py runs about seventy of them).

    python tests/doc_fork.py serve SOCKET          # imports everything once, then forks per request
    python tests/doc_fork.py shoulders ARGS...      # = `shoulders ARGS...`, in a fork of the server
    python tests/doc_fork.py python SCRIPT          # = `python SCRIPT`
    python tests/doc_fork.py code CODE              # = `python -c CODE`

The client passes the server its argv, working directory, environment and its stdin, stdout
and stderr (SCM_RIGHTS), and exits with the child's status. When the client dies (the test
stops a background `shoulders serve`, or a block times out), the server kills the child. The
child runs what a fresh process runs, from the same installed code; what it does not redo is
the imports. `DOCTEST_FORK=0` makes tests/docblocks.py start plain processes instead.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading

PRELOAD = [  # what the blocks' processes import; the import errors of an optional one are ignored
    "torch", "transformers", "transformers.modeling_utils", "transformers.generation",
    "transformers.models.gpt2.modeling_gpt2", "transformers.models.llama.modeling_llama",
    "transformers.models.t5.modeling_t5", "transformers.models.bert.modeling_bert",
    "accelerate", "safetensors.torch", "sentence_transformers", "faiss", "bm25s", "matplotlib.pyplot",
    "shoulders", "shoulders.cli.main", "shoulders.train", "shoulders.train.trainer", "shoulders.train.harness",
    "shoulders.serving.app", "shoulders.reader.retrieval", "shoulders.reader.reranker", "shoulders.reader.reader",
    "shoulders.prompts.idpt", "shoulders.prompts.prompt_tuning.peft_io", "shoulders.recursion.textual",
    "shoulders.recursion.neural", "shoulders.toyworld", "shoulders.experiments.demo",
    "shoulders.experiments.multitask", "shoulders.experiments.reader", "shoulders.experiments.recursion",
    "peft", "lm_eval", "openai", "httpx", "uvicorn", "fastapi",
]


def serve(path: str) -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing optional package is the child's business
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    threading.Thread(target=_orphan_watch, args=(os.getppid(),), daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        request = json.loads(msg.decode())
        pid = os.fork()
        if pid == 0:
            server.close()
            conn.close()
            _child(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        CHILDREN.add(pid)
        threading.Thread(target=_watch, args=(conn, pid), daemon=True).start()


CHILDREN: set[int] = set()


def _orphan_watch(parent: int) -> None:
    """If the test process dies without stopping us, stop the children and exit."""
    import time

    while os.getppid() == parent:
        time.sleep(1)
    for pid in list(CHILDREN):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os._exit(1)


def _watch(conn: socket.socket, pid: int) -> None:
    """Send the child's exit status to the client; kill the child if the client goes first."""
    done = threading.Event()

    def client_gone():
        try:
            conn.recv(1)
        except OSError:
            pass
        if not done.is_set():
            for sig, wait in ((signal.SIGTERM, 50), (signal.SIGKILL, 0)):
                try:
                    os.killpg(pid, sig)  # the child leads its own group (its workers too)
                except ProcessLookupError:
                    return
                for _ in range(wait):
                    if done.wait(0.1):
                        return

    threading.Thread(target=client_gone, daemon=True).start()
    _, status, usage = os.wait4(pid, 0)
    done.set()
    CHILDREN.discard(pid)
    with open(os.path.join(os.environ["DOCTEST_DIR"], "fork-cpu.log"), "a") as f:
        f.write(f"{usage.ru_utime + usage.ru_stime:.3f}\n")
    code = os.waitstatus_to_exitcode(status)
    try:
        conn.sendall(str(code if code >= 0 else 128 - code).encode())
        conn.shutdown(socket.SHUT_RDWR)  # the client reads to the end; this also wakes client_gone's recv
    except OSError:
        pass
    conn.close()


def _child(request: dict, fds: list[int]) -> None:
    code = 1
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        kind, args = request["kind"], request["args"]
        if kind == "shoulders":
            from shoulders.cli.main import main

            sys.argv = ["shoulders", *args]
            sys.path[0] = os.path.dirname(request["executable"])
            code = main(args) or 0
        elif kind == "python":
            import runpy

            sys.argv = list(args)
            sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
            runpy.run_path(args[0], run_name="__main__")
            code = 0
        elif kind == "code":
            sys.argv = ["-c", *args[1:]]
            sys.path[0] = ""
            exec(compile(args[0], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
            code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else (print(e.code, file=sys.stderr), 1)[1])
    except BaseException:  # noqa: BLE001 - what an uncaught exception does in a fresh process
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def client(kind: str, args: list[str]) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["DOCTEST_FORK_SOCKET"])
    request = {"kind": kind, "args": args, "cwd": os.getcwd(), "env": dict(os.environ),
               "executable": os.environ.get("DOCTEST_SHOULDERS", "")}
    socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
    reply = b""
    while chunk := sock.recv(64):
        reply += chunk
    return int(reply or b"1")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(client(sys.argv[1], sys.argv[2:]))
