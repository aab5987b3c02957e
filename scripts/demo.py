"""``make demo``: use the scheduler at ENDPOINT, or start the built-in emulator; then worker and client.

Everything this script starts, it stops (also on Ctrl-C); it exits with the client's status.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402

log = logging.getLogger("demo")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def stop(process: subprocess.Popen | None, name: str) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop on SIGTERM; killing it", name)
        process.kill()
        process.wait()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="demo: %(message)s")
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        log.error("invalid settings: %s", exc)
        return 2
    python = sys.executable
    emulator = worker = None
    try:
        if config.answers(timeout=1.0):
            log.info("using the scheduler that answers at %s", config.endpoint)
        else:
            url = urlsplit(config.endpoint)
            if url.hostname not in LOCAL_HOSTS or config.secure_channel:
                log.error("no scheduler answers at %s, and it is not a local address to start one on", config.endpoint)
                return 2
            log.info("starting the built-in emulator on port %s (state in .emulator/)", url.port or 80)
            dashboard = os.environ.get("DASHBOARD_PORT", "8082")
            emulator = subprocess.Popen([python, "-m", "emulator", "--port", str(url.port or 80),
                                         "--dashboard-port", dashboard], cwd=ROOT)
            if not config.answers(timeout=30.0, wait=True) or emulator.poll() is not None:
                log.error("the emulator did not start; see its messages above")
                return 2
        worker = subprocess.Popen([python, "worker.py"], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = subprocess.run([python, "client.py", *sys.argv[1:]], cwd=ROOT)
        if emulator is not None:
            log.info("to look around afterwards: `make emulator`, then open http://localhost:%s "
                     "(the state is kept in .emulator/)", os.environ.get("DASHBOARD_PORT", "8082"))
        return client.returncode
    except KeyboardInterrupt:
        return 130
    finally:
        stop(worker, "worker")
        stop(emulator, "emulator")


if __name__ == "__main__":
    raise SystemExit(main())
