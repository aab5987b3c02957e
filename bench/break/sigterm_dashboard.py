"""SIGTERM while a browser holds dashboard connections: one idle keep-alive, one half-sent request.

usage: sigterm_dashboard.py
"""
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, ".")
from tests.helpers import Emulator, free_port  # noqa: E402


def main():
    with tempfile.TemporaryDirectory() as tmp:
        dash = free_port()
        emu = Emulator(Path(tmp) / "e.db", dashboard_port=dash).start()
        idle = socket.create_connection(("127.0.0.1", dash))
        idle.sendall(f"GET /api/hubs HTTP/1.1\r\nHost: 127.0.0.1:{dash}\r\n\r\n".encode())
        idle.recv(65536)  # answered; the connection stays open (keep-alive)
        half = socket.create_connection(("127.0.0.1", dash))
        half.sendall(f"GET /api/hubs HTTP/1.1\r\nHost: 127.0.0.1:{dash}\r\n".encode())  # never finished
        time.sleep(0.5)
        t0 = time.monotonic()
        emu.process.signal(signal.SIGTERM)
        rc = emu.process.wait(30)
        print(f"SIGTERM with an idle and a half-sent dashboard connection: exit {rc} after "
              f"{time.monotonic() - t0:.2f} s", flush=True)
        idle.close()
        half.close()


main()
