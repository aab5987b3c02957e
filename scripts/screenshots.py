"""Screenshots of the dashboard's main views for the README, from a real demo run.

    .venv/bin/python scripts/screenshots.py [OUTPUT_DIR]   (default: docs/)

Starts an in-memory emulator and the sample worker on free ports, runs the client,
then drives Debian's Chromium (through Playwright) to each view.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instances_named(base: str, name: str) -> list[str]:
    """IDs of the instances with this name, newest first, from the dashboard's own API."""
    url = f"{base}/api/hubs/default/instances?q={urllib.parse.quote(name)}&page_size=100"
    with urllib.request.urlopen(url, timeout=10) as response:
        return [item["id"] for item in json.load(response)["items"] if item["name"] == name]


def newest(base: str, name: str) -> str:
    return instances_named(base, name)[0]


def oldest(base: str, name: str) -> str:
    return instances_named(base, name)[-1]


def instance_path(instance_id: str) -> str:
    return "/hubs/default/instance?id=" + urllib.parse.quote(instance_id, safe="")


def take(output: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    grpc_port, web_port = free_port(), free_port()
    env = {**os.environ, "ENDPOINT": f"http://127.0.0.1:{grpc_port}"}
    emulator = subprocess.Popen([sys.executable, "-m", "dts_emulator", "--port", str(grpc_port), "--dashboard-port",
                                 str(web_port), "--in-memory"], cwd=ROOT, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not settings.load(env).answers(30.0, wait=True):  # the emulator is still starting
            raise RuntimeError(f"the emulator did not answer at {env['ENDPOINT']}")
        subprocess.run([sys.executable, "client.py"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        output.mkdir(parents=True, exist_ok=True)
        base = f"http://127.0.0.1:{web_port}"
        shots = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            for name, path, ready in [
                ("hubs", "/", "[data-hub=default]"),
                ("entities", "/hubs/default/entities", "text=my-counter-orch-5"),
                ("instances", "/hubs/default/instances", "#histogram svg"),
            ]:
                page.goto(base + path)
                page.wait_for_selector(ready)
                shots.append(output / f"dashboard-{name}.png")
                page.screenshot(path=shots[-1])
            for name, path, ready in [
                ("audit", "/hubs/default/entity?id=%40audit%40account-A", "text=audit completed"),
                ("instance", instance_path(newest(base, "counter_workflow")), "text=final value"),
                ("transfer", instance_path(oldest(base, "transfer_funds")), "text=Lock granted"),  # Part 2's
            ]:
                page.goto(base + path)
                page.wait_for_selector(ready)
                shots.append(output / f"dashboard-{name}.png")
                page.screenshot(path=shots[-1], full_page=True)
            # The drawings of Part 2's transfer, and the counter's log after an operation it does not know.
            page.goto(base + instance_path(oldest(base, "transfer_funds")))
            for name, selector in [("timeline", "#timeline-chart"), ("sequence", "#sequence-chart")]:
                shots.append(output / f"dashboard-{name}.png")
                page.locator(selector).screenshot(path=shots[-1])
            page.goto(base + "/hubs/default/entity?id=%40counter%40my-counter")
            page.fill("input[name=operation]", "multiply")
            page.fill("input[name=input]", "3")
            page.click("button:has-text('Signal')")
            # Until the worker's answer is applied (the log's API says so); the page shows it after a reload.
            page.wait_for_function("""async () => (await (await fetch(
                '/api/hubs/default/entity/operations?id=%40counter%40my-counter')).json()).items
                .some((op) => op.outcome === 'failed')""", polling=100, timeout=30_000)
            page.reload()
            page.locator("#oplog details.op.failed summary").click()
            shots.append(output / "dashboard-oplog.png")
            page.screenshot(path=shots[-1], full_page=True)
            browser.close()
        return shots
    finally:
        for process in (worker, emulator):
            process.terminate()
            process.wait(timeout=15)


if __name__ == "__main__":
    for shot in take(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"):
        print(shot)
