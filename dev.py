"""The project's commands on Windows, macOS and Linux, with nothing but Python 3.10+.

    python dev.py demo        (or: make demo)
    python dev.py test        (or: make test)

``python dev.py help`` lists every command (``quick``: the tests not marked slow, the inner loop);
arguments after a command go to the program it runs. The Makefile calls this file, so both forms
do the same. It creates ``.venv`` with the Python that runs it, installs the requirements pinned by
``constraints.txt``, and installs again only when one of those files changes. Standard library
only: it must run before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

ROOT = Path(__file__).resolve().parent
# The Pythons the README promises; tests/project/test_dev.py installs and runs the demo on the first and last.
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
MINIMUM_PYTHON = tuple(int(part) for part in SUPPORTED_PYTHONS[0].split("."))
CONSTRAINTS = "constraints.txt"
# What each install level reads; the emulator's file includes the sample's, dev includes both.
RUNTIME_FILES = ("requirements.txt", "requirements-emulator.txt", CONSTRAINTS)
DEV_FILES = (*RUNTIME_FILES, "requirements-dev.txt")
CLEANED = (".venv", ".emulator", ".pytest_cache", ".ruff_cache")
LOCK_HEADER = """\
# Every package the project installs, direct and indirect, at one version: pip reads this file
# with -c (dev.py, the Makefile through it, and both Dockerfiles), so an image or a venv gets
# exactly what the tests ran with. Generated; do not edit by hand. To regenerate after changing
# a requirements*.txt file, run with the OLDEST supported Python, so that every pin installs there:
#     python3.10 dev.py lock
# then `make test`, whose test_supported_pythons installs these pins on the oldest and newest
# Python it finds.
"""


def venv_python(venv: PurePath, os_name: str = os.name) -> PurePath:
    """The interpreter inside a venv: Scripts\\python.exe on Windows, bin/python elsewhere."""
    if os_name == "nt":
        return PureWindowsPath(venv) / "Scripts" / "python.exe"
    return PurePosixPath(venv) / "bin" / "python"


def venv_tool(venv: PurePath, name: str, os_name: str = os.name) -> PurePath:
    """A console script installed in the venv (ruff, ...): ``name.exe`` next to python.exe on Windows."""
    python = venv_python(venv, os_name)
    return python.with_name(f"{name}.exe" if os_name == "nt" else name)


def check_python(version: tuple[int, ...] = tuple(sys.version_info)) -> str | None:
    """An error message when this Python is too old for the project, else None."""
    if tuple(version[:2]) >= MINIMUM_PYTHON:
        return None
    wanted = ".".join(map(str, MINIMUM_PYTHON))
    found = ".".join(map(str, version[:3]))
    return f"Python {wanted} or newer is needed (this is {found}); run dev.py with a newer one, e.g. `py -3.12 dev.py`"


def requirements_digest(root: Path, files: tuple[str, ...]) -> str:
    """A fingerprint of the requirement files' contents: a changed file means install again."""
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def is_current(stamp: Path, digest: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == digest


def pip_install_args(requirements: str) -> list[str]:
    """pip's arguments for one requirements file, every version pinned by the constraints file."""
    return ["-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", requirements, "-c", CONSTRAINTS]


class Project:
    """One checkout: its root, its venv and the commands that run inside it."""

    def __init__(self, root: Path = ROOT, venv: Path | None = None):
        self.root = root
        self.venv = venv or root / ".venv"

    @property
    def python(self) -> Path:
        return Path(venv_python(self.venv))

    def run(self, args: list[str]) -> int:
        """Run a command until it exits. Ctrl-C reaches it from the terminal; SIGTERM and SIGHUP sent to
        this process are passed on to it. Either way this waits for it to stop (``subprocess.run`` would
        kill it after a quarter of a second, before it could stop what it started)."""
        print("+", " ".join(str(a) for a in args), flush=True)
        started: list[subprocess.Popen] = []
        forwarded = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
        previous = {name: signal.signal(getattr(signal, name), lambda number, _: [c.send_signal(number)
                                                                                 for c in started])
                    for name in forwarded}
        try:
            child = subprocess.Popen(args, cwd=self.root)
            started.append(child)
            while True:
                try:
                    return child.wait()
                except KeyboardInterrupt:
                    continue  # the terminal sent Ctrl-C to the child too; it is stopping
        finally:
            for name, handler in previous.items():
                signal.signal(getattr(signal, name), handler)

    def venv_is_whole(self) -> bool:
        """A venv whose creation was cut short (Ctrl-C, SIGTERM) has a python but no pip: it is made again."""
        if not self.python.exists():
            return False
        pips = [*self.venv.glob("lib/python*/site-packages/pip"), self.venv / "Lib" / "site-packages" / "pip"]
        return any(pip.is_dir() for pip in pips)

    def create_venv(self) -> None:
        if self.venv_is_whole():
            return
        if self.venv.exists():
            print(f"{self.venv} is incomplete (its creation was interrupted); creating it again", flush=True)
            shutil.rmtree(self.venv)
        print(f"creating {self.venv} with Python {sys.version.split()[0]}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)

    def install(self, dev: bool = False) -> None:
        """Create the venv and install runtime (and dev) requirements, unless they are current."""
        self.create_venv()
        levels = [(".installed", "requirements-emulator.txt", RUNTIME_FILES)]
        if dev:
            levels.append((".installed-dev", "requirements-dev.txt", DEV_FILES))
        for stamp_name, requirements, files in levels:
            stamp = self.venv / stamp_name
            digest = requirements_digest(self.root, files)
            if is_current(stamp, digest):
                continue
            first = "the first time takes a minute or two; " if not stamp.exists() else ""
            print(f"installing the packages in {requirements} into {self.venv.name} (versions from {CONSTRAINTS}; "
                  f"{first}pip is quiet until it is done)", flush=True)
            subprocess.run([str(self.python), *pip_install_args(requirements)], cwd=self.root, check=True)
            stamp.write_text(digest + "\n")

    def clean(self) -> None:
        for name in CLEANED:
            shutil.rmtree(self.root / name, ignore_errors=True)
        for cache in self.root.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)

    def lock(self) -> None:
        """Regenerate constraints.txt from a clean venv of this Python with requirements-dev.txt."""
        with tempfile.TemporaryDirectory() as scratch:
            python = str(venv_python(Path(scratch) / "venv"))
            subprocess.run([sys.executable, "-m", "venv", str(Path(scratch) / "venv")], check=True)
            subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                            "requirements-dev.txt"], cwd=self.root, check=True)
            frozen = subprocess.run([python, "-m", "pip", "freeze", "--all", "--exclude", "pip", "--exclude",
                                     "setuptools"], check=True, capture_output=True, text=True).stdout
        pins = sorted((line for line in frozen.splitlines() if "==" in line),
                      key=lambda pin: pin.split("==")[0].lower())
        (self.root / CONSTRAINTS).write_text(LOCK_HEADER + "\n".join(pins) + "\n")
        print(f"wrote {len(pins)} pins to {CONSTRAINTS} (Python {sys.version.split()[0]})")


# Each command, with the line `python dev.py help` shows for it.
COMMANDS = {
    "demo": "run the whole demo: the built-in emulator (unless a scheduler answers at ENDPOINT), worker, client",
    "test": "lint, then every test, in parallel (pytest; arguments go to pytest)",
    "quick": "the tests not marked slow, in parallel: the inner loop (arguments go to pytest)",
    "lint": "ruff over the project",
    "emulator": "the built-in emulator alone, with its dashboard on http://localhost:8082 (--help: its flags)",
    "worker": "the worker alone, against ENDPOINT (default http://localhost:8080)",
    "client": "the client alone: the demo's four parts (--help: its options)",
    "bench": "the benchmarks (bench/run.py)",
    "install": "create .venv and install the requirements (--dev: also the test tools)",
    "clean": "remove .venv, .emulator (the emulator's state) and caches",
    "lock": "regenerate constraints.txt (run with the oldest supported Python)",
}
HELP_WORDS = ("help", "--help", "-h")
PROGRAMS = {
    "demo": ["scripts/demo.py"],
    "emulator": ["-m", "emulator"],
    "worker": ["worker.py"],
    "client": ["client.py"],
    "bench": ["bench/run.py"],
}
DEV_COMMANDS = ("test", "quick", "lint", "bench")


def parallel_workers(cpus: int | None) -> int:
    """pytest-xdist workers: two per core, as most tests wait on a process, a socket or pip, not the CPU."""
    return max(2, min(8, 2 * (cpus or 1)))


def pytest_args(command: str, rest: list[str], cpus: int | None = None) -> list[str]:
    """pytest's arguments for ``test`` or ``quick``: parallel workers unless ``rest`` chooses (-n, -p no:xdist)."""
    chosen = any(a == "-n" or a.startswith(("-n", "--numprocesses", "--dist")) for a in rest) or "no:xdist" in rest
    args = [] if chosen else ["-n", str(parallel_workers(cpus or os.cpu_count()))]
    if command == "quick":
        args += ["-m", "not slow"]
    return [*args, *rest]


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return ("usage: python dev.py COMMAND [ARGS...]   (or: make COMMAND ARGS=\"...\")\n\ncommands:\n"
            + "\n".join(lines))


def main(argv: list[str] | None = None, project: Project | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in HELP_WORDS:
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"dev.py: unknown command '{argv[0]}'\n\n{usage()}", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    problem = check_python()
    if problem:
        print(f"dev.py: {problem}", file=sys.stderr)
        return 2
    project = project or Project()
    if command == "clean":
        project.clean()
        return 0
    if command == "lock":
        project.lock()
        return 0
    try:
        project.install(dev=command in DEV_COMMANDS or (command == "install" and "--dev" in rest))
    except subprocess.CalledProcessError as exc:
        print(f"dev.py: `{' '.join(map(str, exc.cmd[:4]))} ...` failed (its messages are above); run the command "
              "again, or `python dev.py clean` first to start from a new .venv", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dev.py: stopped (Ctrl-C) while installing; the next command carries on", file=sys.stderr)
        return 130
    if command == "install":
        return 0
    python = str(project.python)
    if command in ("test", "quick", "lint"):
        status = project.run([str(venv_tool(project.venv, "ruff")), "check", "."])
        if status or command == "lint":
            return status
        return project.run([python, "-m", "pytest", *pytest_args(command, rest)])
    return project.run([python, *PROGRAMS[command], *rest])


if __name__ == "__main__":
    raise SystemExit(main())
