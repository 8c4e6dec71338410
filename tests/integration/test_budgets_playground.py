"""Per-key budgets and the playground on real Ray Serve, with a real redis-server as the budgets' store and
Debian's headless Chromium driving the page. Upstreams are loopback OpenAI-protocol servers of the tests'
own (they report 5 prompt and 7 completion tokens per answer, so every answer has a known price).

- a key with a budget is served until the budget is used, then gets 429 ``insufficient_quota`` (the official
  client raises RateLimitError); ``/stats`` shows each key its own budget and never another key's;
- the ingress replica is killed; the new one finds the spend in Redis and still refuses the key;
- the playground page, in Chromium: type a key and a prompt, and the routers' scores, the decision (tier,
  threshold, price) and the streamed answer appear, and the routing-share chart gets points.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from routeray.config import ScorerConfig, _has_artifact
from routeray.gateway.access import key_id
from tests.binaries import require_binary
from tests.integration.conftest import FakeGateway, fake_gateway
from tests.redis_server import redis_server

pytestmark = pytest.mark.integration

RICH, POOR = "sk-playground-rich-01", "sk-budget-poor-0002"
STRONG_PRICES = {"price_input_per_mtok": 2.5, "price_output_per_mtok": 10.0}
ANSWER_COST = (5 * 2.5 + 7 * 10.0) / 1e6  # one strong answer of the fakes
POOR_BUDGET = 2.5 * ANSWER_COST
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class Env:
    gw: FakeGateway
    routers: list[str]
    tmp: Path

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.gw.url}/v1", api_key=key, max_retries=0, timeout=30)

    def stats(self, key: str) -> dict:
        r = httpx.get(f"{self.gw.url}/stats", headers={"authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def env(clean_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("budgets")
    keys = tmp / "client_keys.txt"
    keys.write_text(f"{RICH} usd=100\n{POOR} usd={POOR_BUDGET!r}\n")
    routers = ["random"] + (["mf"] if _has_artifact("mf") else [])
    access = {"api_keys_file": str(keys), "budgets": {"store": "redis", "period": "month", "hold_wait_s": 5}}
    with redis_server(tmp) as url:
        os.environ["ROUTERAY_REDIS_URL"] = url  # inherited by the Ray cluster this module starts
        try:
            with fake_gateway(routers=[ScorerConfig(router=r) for r in routers], strong=STRONG_PRICES,
                              ingress={"access": access}) as gw:
                yield Env(gw, routers, tmp)
        finally:
            os.environ.pop("ROUTERAY_REDIS_URL", None)


def _ask(env: Env, key: str, i: int) -> str:
    r = env.client(key).chat.completions.create(
        model="strong", max_tokens=16, messages=[{"role": "user", "content": f"Question {i}: what is {i}+{i}?"}])
    return r.model


def test_a_key_is_served_up_to_its_budget_then_refused(env: Env) -> None:
    served = 0
    with pytest.raises(openai.RateLimitError) as exc:
        for i in range(10):
            assert _ask(env, POOR, i) == "fake-strong"
            served += 1
    assert served == 3  # 2.5 answers' worth: the third starts inside the budget, the fourth is refused
    err = exc.value.body
    assert err["code"] == "insufficient_quota" and "budget" in err["message"]
    assert int(exc.value.response.headers["retry-after"]) >= 1
    assert _ask(env, RICH, 99) == "fake-strong"  # another key is untouched


def test_stats_show_each_key_its_own_budget_only(env: Env) -> None:
    poor, rich = env.stats(POOR)["key"], env.stats(RICH)["key"]
    assert poor["key"] == key_id(POOR) and rich["key"] == key_id(RICH)
    assert poor["budget_usd"] == pytest.approx(POOR_BUDGET) and rich["budget_usd"] == 100
    assert poor["spent_usd"] == pytest.approx(3 * ANSWER_COST) and poor["remaining_usd"] == 0
    assert poor["store"] == "redis" and poor["period"] == "month"
    assert key_id(RICH) not in str(env.stats(POOR)) and key_id(POOR) not in str(env.stats(RICH))
    metrics = httpx.get(f"{env.gw.url}/metrics", timeout=30).text
    assert f'routeray_key_budget_remaining_dollars{{key="{key_id(POOR)}"}} 0.0' in metrics
    assert f'routeray_budget_refusals_total{{action="rejected",key="{key_id(POOR)}"}} 1.0' in metrics


def test_the_budget_survives_a_restarted_ingress_replica(env: Env) -> None:
    import ray
    from ray import serve

    app = env.gw.cfg.app_name
    prefix = f"SERVE_REPLICA::{app}#Gateway#"
    before = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]
    assert len(before) == 1
    ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        now = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]
        status = serve.status().applications[app].deployments["Gateway"]
        if now and now != before and status.replica_states.get("RUNNING", 0) >= 1:
            break
        time.sleep(0.5)
    else:
        pytest.fail("no new Gateway replica after 90 s")
    deadline = time.time() + 30
    while True:  # the proxy may still route to the dead replica for a moment
        try:
            poor = env.stats(POOR)["key"]
            break
        except (AssertionError, httpx.HTTPError):
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    assert poor["spent_usd"] == pytest.approx(3 * ANSWER_COST)  # from Redis, not from the dead replica
    with pytest.raises(openai.RateLimitError):
        _ask(env, POOR, 100)


@pytest.fixture
def chromium(env: Env) -> Iterator[object]:
    browser, driver_bin = require_binary("chromium", "chromium"), require_binary("chromedriver", "chromium-driver")
    pytest.importorskip("selenium", reason="selenium not installed (pip install -e '.[dev]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for drivers online
    profile = env.tmp / "chromium-profile"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        left = subprocess.run(["pgrep", "-f", f"--user-data-dir={profile}"], capture_output=True, text=True)
        assert not left.stdout.strip(), f"Chromium left running: {left.stdout}"


def test_playground_shows_scores_decision_and_streamed_answer(env: Env, chromium: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver: object = chromium
    page = httpx.get(f"{env.gw.url}/playground", timeout=30)
    assert page.status_code == 200 and "routeray playground" in page.text
    assert httpx.post(f"{env.gw.url}/playground/api/explain", json={"prompt": "x", "model": "strong"},
                      timeout=30).status_code == 401  # the page's API is behind the client keys
    driver.get(f"{env.gw.url}/playground")  # type: ignore[attr-defined]
    find = driver.find_element  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    find(By.ID, "key").send_keys(RICH)
    find(By.ID, "prompt").click()  # the key field's change event loads the model list with the key
    wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) >= 2 + len(env.routers))
    find(By.ID, "custom").send_keys("router-random-0.5")
    find(By.ID, "prompt").send_keys("Prove that there are infinitely many primes.")
    find(By.ID, "send").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "answer"), "infinitely many"))
    wait.until(lambda d: d.find_element(By.ID, "answer").get_attribute("data-done") == "1")
    decision = find(By.ID, "decision")
    tier = decision.get_attribute("data-tier")
    assert tier in ("strong", "weak")
    assert f"[fake-{tier}]" in find(By.ID, "answer").text
    text = decision.text
    assert "router random" in text and "threshold 0.5000" in text and "per million" in text
    rows = find(By.ID, "scores").find_elements(By.TAG_NAME, "tr")
    assert sorted(r.get_attribute("data-router") for r in rows) == sorted(env.routers)
    assert all(r.find_elements(By.TAG_NAME, "td")[1].text.startswith("0.") for r in rows)
    wait.until(lambda d: int(d.find_element(By.ID, "shares").get_attribute("data-points")) > 0)
    assert not find(By.ID, "error").text
