"""The API's own HTTP figures keep their labels few: any method, action or path a client
sends maps onto a bounded set."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cinderblock.runtime.metrics import UNMATCHED, HttpMetrics

pytestmark = pytest.mark.unit


def test_unknown_methods_and_actions_become_one_label_each() -> None:
    http = HttpMetrics(None, actions=("os-extend",))
    route = "/v3/{project_id}/volumes/{volume_id}/action"
    for method, action in (("FOO", ""), ("BAR", ""), ("POST", "os-x1"), ("POST", "os-x2")):
        http.observe(method, route, action, 400, 0.001)
    http.observe("POST", route, "os-extend", 202, 0.02)
    http.observe("GET", UNMATCHED, "", 404, 0.001)
    samples = [
        s
        for family in text_string_to_metric_families(generate_latest(http.registry).decode())
        for s in family.samples
        if s.name == "cinderblock_http_requests_total"
    ]
    found = {(s.labels["method"], s.labels["action"], s.labels["status"]): s.value for s in samples}
    assert found == {
        ("other", "", "400"): 2,
        ("POST", "unknown", "400"): 2,
        ("POST", "os-extend", "202"): 1,
        ("GET", "", "404"): 1,
    }
    assert {s.labels["route"] for s in samples} == {route, UNMATCHED}
