"""Fault injection for the kit's processes in tests, loaded through PYTHONPATH.

KIT_KILL_ON=<moment>:<file name> makes the process send itself SIGKILL (a
real kill -9: no cleanup, no finally blocks) at an exact moment of writing
<file name>, found through Python's audit events:

- open:   when the temporary file for <file name> is opened for writing
          (nothing written yet);
- rename: when the complete temporary file is about to be renamed onto
          <file name>.

KIT_FAIL_LOAD=<n> makes the n-th image read from its file raise an I/O error
(OSError EIO) after appending the image ID as a line to $KIT_FAIL_LOAD_LOG: a
loader that fails mid-epoch. The count is per process, so with worker processes
each worker may fail one image (hence one line each).
"""

import os
import signal
import sys


def _kill_on(moment: str, name: str):
    def hook(event, args):
        if moment == "open" and event == "open":
            path, mode = str(args[0]), args[1]
            if os.path.basename(path).startswith(f".{name}.") and mode and "w" in str(mode):
                os.kill(os.getpid(), signal.SIGKILL)
        elif moment == "rename" and event == "os.rename":
            if os.path.basename(str(args[1])) == name:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)


def _fail_load(n: int, log: str):
    import errno
    import itertools
    import threading

    from competition.data import sources

    counter, lock, original = itertools.count(1), threading.Lock(), sources.ImageSource.load

    def load(self, image_id):
        with lock:
            call = next(counter)
        if call == n:
            with open(log, "a") as handle:
                handle.write(f"{image_id}\n")
            raise OSError(errno.EIO, "Input/output error", f"{image_id}.dcm")
        return original(self, image_id)

    sources.ImageSource.load = load


if os.environ.get("KIT_KILL_ON"):
    _kill_on(*os.environ["KIT_KILL_ON"].split(":", 1))
if os.environ.get("KIT_FAIL_LOAD"):
    _fail_load(int(os.environ["KIT_FAIL_LOAD"]), os.environ["KIT_FAIL_LOAD_LOG"])
