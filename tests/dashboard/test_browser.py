"""The dashboard in Debian's Chromium, driven by Playwright, on the demo's data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest
from durabletask import client as dt_client
from durabletask import entities

from tests.helpers import (
    ROOT,
    DemoSite,
    awaits_approval,
    entity_url,
    instance_url,
    locks_calls_and_waits,
    wait_until,
)

pytestmark = pytest.mark.slow  # a browser, and the screenshot script

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)

XSS_KEY = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    demo = DemoSite(tmp_path_factory.mktemp("browser") / "b.db")
    demo.client.signal_entity(entities.EntityInstanceId("counter", XSS_KEY), "add", 3)
    yield demo.emulator.dashboard, demo.client
    demo.close()


def test_entities_view_shows_the_counter_value(site, page):
    base, _ = site
    page.goto(base + "/")
    page.click("[data-hub=default] a:has-text('Entities')")
    row = page.locator('tr[data-entity="@counter@my-counter"]')
    playwright_api.expect(row.locator("td.state")).to_have_text("75")


def test_instance_view_shows_result_and_entity_history(site, page):
    base, _ = site
    page.goto(base + "/hubs/default/instances?q=counter_workflow")
    page.locator("td.id a").first.click()
    playwright_api.expect(page.locator("#output")).to_contain_text("final value: 12")
    timeline = page.locator("#timeline")
    playwright_api.expect(timeline.locator("li.entity").filter(has_text="Signal add to counter/")).to_have_count(2)
    labels = timeline.locator("li.entity .label")
    playwright_api.expect(labels.filter(has_text=re.compile(r"^Call get on counter/\S+$"))).to_have_count(1)
    playwright_api.expect(timeline.locator("li.entity").filter(has_text=" returned")).to_contain_text("12")


def test_html_entity_key_is_shown_as_text(site, page):
    base, _ = site
    page.goto(base + "/hubs/default/entities?q=%3Cimg")
    playwright_api.expect(page.get_by_text(XSS_KEY, exact=True)).to_be_visible()
    assert page.locator("main img").count() == 0
    page.get_by_text(XSS_KEY, exact=True).click()
    playwright_api.expect(page.locator("h1")).to_have_text(f"counter / {XSS_KEY}")
    assert page.locator("main img").count() == 0
    assert page.dialogs == []  # no alert() ran


def signal_from_the_page(site, page, uid: str, operation: str, value: str) -> None:
    """A counter at 1, then ``operation value`` signalled from its page's form."""
    base, c = site
    c.signal_entity(entities.EntityInstanceId("counter", uid), "add", 1)
    page.goto(base + entity_url(f"@counter@{uid}", api=False))
    playwright_api.expect(page.locator("#state")).to_have_text("1")
    page.fill("input[name=operation]", operation)
    page.fill("input[name=input]", value)
    page.click("button:has-text('Signal')")


def test_signal_an_entity_from_its_page(site, page, uid):
    base, c = site
    signal_from_the_page(site, page, uid, "add", "41")
    c_state = lambda: c.get_entity(entities.EntityInstanceId("counter", uid)).get_typed_state(int)  # noqa: E731
    wait_until(lambda: c_state() == 42, message="signal applied")
    page.reload()
    playwright_api.expect(page.locator("#state")).to_have_text("42")


def test_terminate_asks_to_confirm(site, page, uid):
    base, c = site
    instance_id = c.schedule_new_orchestration(awaits_approval, instance_id=f"t-{uid}")
    c.wait_for_orchestration_start(instance_id, timeout=30)
    page.goto(base + instance_url(instance_id, api=False))
    page.click("text=Terminate")
    assert page.dialogs and instance_id in page.dialogs[0]
    state = c.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.TERMINATED
    page.reload()
    playwright_api.expect(page.locator("#status")).to_have_text("TERMINATED")


def test_status_filter_has_its_own_url(site, page):
    base, _ = site
    page.goto(base + "/hubs/default/instances")
    page.select_option("select[name=status]", "COMPLETED")
    page.click("text=Filter")
    page.wait_for_url("**/instances?status=COMPLETED")
    page.reload()
    playwright_api.expect(page.locator("select[name=status]")).to_have_value("COMPLETED")
    assert page.locator("tr[data-instance]").count() >= 5


def test_entity_search_and_auto_refresh_have_their_own_url(site, page):
    base, _ = site
    page.goto(base + "/hubs/default/entities")
    page.fill("input[name=q]", "counter")
    page.click("text=Search")
    page.wait_for_url("**/entities?q=counter")
    assert page.locator("tr[data-entity]").count() >= 1
    page.check("input[type=checkbox]")
    page.wait_for_url("**/entities?q=counter&refresh=1")
    playwright_api.expect(page.locator("input[name=q]")).to_have_value("counter")


def test_screenshot_script_produces_every_view(tmp_path):
    result = subprocess.run([sys.executable, "scripts/screenshots.py", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    names = ["dashboard-hubs.png", "dashboard-entities.png", "dashboard-instances.png", "dashboard-audit.png",
             "dashboard-instance.png", "dashboard-transfer.png", "dashboard-timeline.png", "dashboard-sequence.png",
             "dashboard-oplog.png"]
    assert [line.rsplit("/", 1)[-1] for line in result.stdout.split()] == names
    assert all((tmp_path / name).stat().st_size > 5000 for name in names)


HOSTILE_EVENT = "</text><script>alert(2)</script>"
HOSTILE_ID = 'x"><svg onload=alert(3)>'


def test_a_failed_operation_shows_in_the_entity_log_with_the_workers_error(site, page, uid):
    base, _ = site
    signal_from_the_page(site, page, uid, "multiply", "3")
    wait_until(lambda: any(op["outcome"] == "failed" for op in json.load(urllib.request.urlopen(
        base + entity_url(f"@counter@{uid}", "operations")))["items"]), message="the failure applied")
    page.reload()
    failed = page.locator("#oplog details.op.failed")
    playwright_api.expect(failed).to_have_count(1)
    playwright_api.expect(failed.locator("summary")).to_contain_text("multiply")
    failed.locator("summary").click()
    playwright_api.expect(failed).to_contain_text("ValueError: unknown operation 'multiply'")
    playwright_api.expect(page.locator("#oplog details.op.succeeded summary")).to_contain_text("from client")
    playwright_api.expect(page.locator("#state")).to_have_text("1")
    page.goto(base + f"/hubs/default/entities?q={uid}")
    playwright_api.expect(page.locator(f'tr[data-entity="@counter@{uid}"] td.failed-at')).not_to_be_empty()


def test_a_transfer_draws_its_lock_and_links_its_partners(site, page):
    base, _ = site
    page.goto(base + "/hubs/default/instances?q=transfer_funds")
    page.locator("td.id a").last.click()  # the oldest: Part 2's transfer from account-A
    lock = page.locator("#timeline-chart g.span.lock")
    playwright_api.expect(lock.locator("text.duration")).to_have_text(re.compile(r"^held [\d.]+ m?s \(waited .+\)$"))
    playwright_api.expect(page.locator("#sequence-chart g.message.lock")).to_have_count(5)
    playwright_api.expect(page.locator("#timeline li .time").first).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))
    page.locator("#sequence-chart a", has_text="account/account-B").click()
    playwright_api.expect(page.locator("h1")).to_have_text("account / account-B")


def test_an_audit_workflow_links_back_to_the_account_that_started_it(site, page):
    base, _ = site
    page.goto(base + "/hubs/default/instances?q=audit_workflow")
    page.locator("td.id a").first.click()
    playwright_api.expect(page.locator("#started-by")).to_have_text("entity @account@account-A")
    page.locator("#started-by a").click()
    playwright_api.expect(page.locator("h1")).to_have_text("account / account-A")
    playwright_api.expect(page.locator("#oplog")).to_contain_text("withdraw")


def test_hostile_names_in_the_drawings_and_the_log_are_text(site, page):
    base, c = site
    instance_id = c.schedule_new_orchestration(locks_calls_and_waits, instance_id=HOSTILE_ID,
                                               input={"key": XSS_KEY, "event": HOSTILE_EVENT})
    c.wait_for_orchestration_start(instance_id, timeout=30)
    c.raise_orchestration_event(instance_id, HOSTILE_EVENT, data=1)
    assert c.wait_for_orchestration_completion(instance_id, timeout=30).serialized_output == "1"
    page.goto(base + instance_url(HOSTILE_ID, api=False))
    titles = page.locator("#sequence-chart title")
    playwright_api.expect(titles.filter(has_text=XSS_KEY)).to_have_count(1)  # the entity's lifeline
    playwright_api.expect(page.locator("#sequence-chart text.message-text").filter(has_text="</text><script>"))\
        .to_have_count(1)
    playwright_api.expect(page.locator("#timeline-chart title").filter(has_text=XSS_KEY)).to_have_count(2)
    assert page.locator("main img, main script, main svg svg, main foreignObject").count() == 0
    page.goto(base + entity_url(f"@counter@{XSS_KEY}", api=False))
    sender = page.locator("#oplog details.op summary .from a").first
    playwright_api.expect(sender).to_have_text(HOSTILE_ID)
    sender.click()
    playwright_api.expect(page.locator("h1")).to_have_text(HOSTILE_ID)
    assert page.locator("main img, main script").count() == 0 and page.dialogs == []


def test_the_instance_list_filters_by_tag_sorts_and_draws_its_histogram(site, page, uid):
    base, c = site
    tagged = [c.schedule_new_orchestration(awaits_approval, tags={"batch": uid}) for _ in range(2)]
    for instance_id in tagged:
        c.wait_for_orchestration_start(instance_id, timeout=30)
    page.goto(base + "/hubs/default/instances")
    page.fill("input[name=tag]", f"batch={uid}")
    page.select_option("select[name=sort]", "updated")
    page.click("text=Filter")
    page.wait_for_url(f"**/instances?tag=batch%3D{uid}&sort=updated")
    playwright_api.expect(page.locator("tr[data-instance]")).to_have_count(2)
    playwright_api.expect(page.locator("tr[data-instance] td.tags").first).to_have_text(f"batch={uid}")
    counts = page.locator("#histogram rect.started").evaluate_all("bars => bars.map((b) => +b.dataset.count)")
    assert sum(counts) == 2 and len(counts) == 40
    for instance_id in tagged:
        c.terminate_orchestration(instance_id)
