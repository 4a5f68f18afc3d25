"""Run `shoulders` while recording every path this process opens for writing or renames.

Used by the distributed test to prove that only rank 0 writes files: Python's audit
hooks see every open/rename/mkdir/remove, whatever library does it.
"""
import atexit
import os
import sys

log_path = os.environ["SHOULDERS_WRITE_LOG"].replace("{rank}", os.environ.get("RANK", "0"))
written: set[str] = set()


def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            written.add(os.fsdecode(args[0]))
    elif event in ("os.rename", "os.replace", "os.mkdir", "os.remove", "shutil.rmtree"):
        written.add(os.fsdecode(args[0]))


def dump():
    with open(log_path, "w") as f:
        f.write("\n".join(sorted(written)))


sys.addaudithook(hook)
atexit.register(dump)
from shoulders.cli.main import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
