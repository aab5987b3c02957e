"""The instance list's tags, version and scheduled start, its tag/created filters and sorts, and the
histogram of starts and completions of what the filters match (the same set bulk actions act on)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from durabletask import client as dt_client

from tests.helpers import InProcessEmulator, awaits_approval, free_port, wait_until


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


class Listing:
    def __init__(self, start_worker):
        self.emulator = InProcessEmulator(None, dashboard_port=free_port()).start()
        start_worker(self.emulator.address, orchestrators=[awaits_approval])
        self.client = dt_client.TaskHubGrpcClient(host_address=self.emulator.address)

    def call(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(self.emulator.dashboard + path, method="POST" if body is not None else "GET",
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def ids(self, **query) -> list[str]:
        status, page = self.call("/api/hubs/default/instances?" + urllib.parse.urlencode({"page_size": 200, **query}))
        assert status == 200, page
        return [i["id"] for i in page["items"]]

    def histogram(self, **query) -> dict:
        status, body = self.call("/api/hubs/default/instances/histogram?" + urllib.parse.urlencode(query))
        assert status == 200, body
        return body

    def approve(self, instance_id: str) -> None:
        self.client.raise_orchestration_event(instance_id, "approve", data=instance_id)
        self.client.wait_for_orchestration_completion(instance_id, timeout=30)


@pytest.fixture(scope="module")
def listing():
    from tests.conftest import WorkerFactory

    workers = WorkerFactory()
    site = Listing(workers)
    try:
        first = [site.client.schedule_new_orchestration(awaits_approval, instance_id=f"billing-{n}",
                                                        tags={"team": "billing"}, version="2" if n else None)
                 for n in range(3)]
        wait_until(lambda: len(site.ids()) == 3, message="the first three stored")
        middle = time.time()
        wait_until(lambda: time.time() > middle + 0.01, message="a moment between the groups")
        second = [site.client.schedule_new_orchestration(awaits_approval, instance_id=f"ops-{n}", tags={"team": "ops"})
                  for n in range(2)]
        later = site.client.schedule_new_orchestration(
            awaits_approval, instance_id="later", start_at=datetime.now(timezone.utc) + timedelta(days=1))
        site.approve(first[1])
        site.approve(first[0])  # the oldest instance is the last one updated
        yield site, first, second, later, middle
    finally:
        workers.stop_all()
        site.client.close()
        site.emulator.stop()


def test_the_list_shows_tags_version_and_scheduled_start(listing):
    site, first, _, later, _ = listing
    _, page = site.call("/api/hubs/default/instances?page_size=200")
    items = {i["id"]: i for i in page["items"]}
    assert items[first[1]]["tags"] == {"team": "billing"} and items[first[1]]["version"] == "2"
    assert items[first[0]]["version"] is None
    assert items[later]["scheduledStart"] > items[later]["created"] and items[first[0]]["scheduledStart"] is None


def test_filters_by_tag_and_created_time(listing):
    site, first, second, later, middle = listing
    assert set(site.ids(tag="team=billing")) == set(first)
    assert set(site.ids(tag="team")) == set(first + second)
    assert site.ids(tag="team=nobody") == [] and site.ids(tag="other") == []
    assert set(site.ids(to=iso(middle))) == set(first)
    assert set(site.ids(**{"from": iso(middle)})) == {*second, later}
    assert set(site.ids(tag="team", **{"from": iso(middle)})) == set(second)


def test_sorts_by_created_or_by_last_updated(listing):
    site, first, _, _, _ = listing
    by_created = site.ids(tag="team=billing")
    assert by_created == first[::-1]  # newest created first
    assert site.ids(tag="team=billing", sort="updated") == [first[0], first[1], first[2]]
    _, page = site.call("/api/hubs/default/instances?sort=updated&page_size=1")
    _, rest = site.call(f"/api/hubs/default/instances?sort=updated&page_size=10&after={page['next']}")
    assert [i["id"] for i in page["items"]] + [i["id"] for i in rest["items"]] == site.ids(sort="updated")


def test_the_histogram_counts_starts_and_completions_of_the_filtered_set(listing):
    site, first, _, _, middle = listing
    billing = site.histogram(tag="team=billing")
    assert billing["total"] == 3 and sum(billing["started"]) == 3 and sum(billing["completed"]) == 2
    assert len(billing["started"]) == 40 and billing["from"] <= billing["to"]
    everything = site.histogram()
    assert everything["total"] == 6 and sum(everything["started"]) == 6 and sum(everything["completed"]) == 2
    window = site.histogram(**{"from": iso(middle - 60), "to": iso(middle)})
    assert window["total"] == 3 and sum(window["started"]) == 3
    assert window["from"][:19] == iso(middle - 60)[:19] and window["to"][:19] == iso(middle)[:19]
    assert site.histogram(tag="nobody") == {"from": None, "to": None, "bucketSeconds": None, "started": [0] * 40,
                                            "completed": [0] * 40, "total": 0}


def test_bulk_actions_on_the_filter_mean_the_same_instances(listing):
    site, first, _, _, _ = listing
    status, body = site.call("/api/hubs/default/bulk",
                             {"action": "terminate", "dryRun": True, "filter": {"tag": "team=billing"}})
    assert status == 200 and body == {"count": 1, "matched": 3}  # two of the three have completed


@pytest.mark.parametrize("query, fragment", [
    ("sort=name", "unknown sort 'name'"),
    ("from=yesterday", "'from' must be a date and time"),
    ("to=2030-01-01T00:00:00", "needs a time zone"),
    ("from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", "'to' must be later than 'from'"),
    ("tag==x", "with a key"),
])
def test_bad_list_parameters_are_400(listing, query, fragment):
    site = listing[0]
    paths = ["/api/hubs/default/instances?"]
    if not query.startswith("sort"):  # the histogram has no order
        paths.append("/api/hubs/default/instances/histogram?")
    for path in paths:
        status, body = site.call(path + query)
        assert status == 400 and fragment in body["error"], (path, body)
