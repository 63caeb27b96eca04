"""The three acceptance scenarios of the design, replayed over HTTP against a running server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message

Say = Callable[[str], None]


class Api:
    """A tiny JSON client for the local server, signed in as `user` (a token from `token_for`)."""

    def __init__(
        self, base_url: str, timeout: float = 10.0, token_for: Callable[[str], str | None] = lambda user: None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token_for = token_for

    def call(self, method: str, path: str, body: object | None = None, user: str | None = None) -> tuple[int, dict]:
        status, answer, _ = self.request(method, path, body, user)
        return status, answer

    def request(
        self, method: str, path: str, body: object | None = None, user: str | None = None
    ) -> tuple[int, dict, Mapping[str, str]]:
        """(status, JSON body, headers by lower-case name)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        token = self.token_for(user) if user is not None else None
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read()), _lower(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}"), _lower(error.headers)

    def search(self, user_id: str, query: str, limit: int = 10) -> dict:
        status, body = self.call(
            "POST", "/api/search/personalized", {"query": query, "user_id": user_id, "limit": limit}, user_id
        )
        if status != 200:
            raise RuntimeError(f"search failed with {status}: {body}")
        return body

    def track(self, *events: dict) -> dict:
        users = {e["user_id"] for e in events}
        status, body = self.call(
            "POST", "/api/interactions/track", {"events": list(events)}, users.pop() if len(users) == 1 else None
        )
        if status != 202:
            raise RuntimeError(f"track failed with {status}: {body}")
        return body

    def preferences(self, user_id: str) -> dict:
        return self.call("GET", f"/api/users/{user_id}/preferences/live", user=user_id)[1]


def _lower(headers: Message) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@dataclass
class Outcome:
    name: str
    passed: bool
    detail: str
    steps: list[str] = field(default_factory=list)


class MissingProduct(LookupError):
    """The installed catalog lacks a product a scenario is played with (it is written for the demo catalog)."""


def _first(results: list[dict], *wanted: Callable[[dict], bool]) -> dict | None:
    """The first result meeting the first of `wanted` that any result meets."""
    for test in wanted:
        for result in results:
            if test(result):
                return result
    return None


def _named(words: str) -> Callable[[dict], bool]:
    return lambda result: words in result["name"].lower()


def _top(results: list[dict], n: int = 3) -> str:
    return "; ".join(
        f"{r['rank'] + 1}. {r['name']}" + (f" [{', '.join(r['badges'])}]" if r["badges"] else "") for r in results[:n]
    )


def new_shopper_gets_plant_based_yogurt(api: Api, say: Say, user: str = "demo-oat") -> Outcome:
    """Scenario 1: search "milk", click oat milk, then "yogurt" shows plant-based yogurt first."""
    query = "milk"
    milk = api.search(user, query, limit=100)
    say(f"  search 'milk' (new shopper, personalization: {milk['personalization']['reason']}): {_top(milk['results'])}")
    oat = _first(milk["results"], _named("oat milk"))
    if oat is None:  # a bigger catalog: more milks than a shopper scrolls through
        query = "oat milk"
        say("  no oat milk in the first 100 results: searches 'oat milk'")
        oat = _first(api.search(user, query)["results"], _named("oat milk"))
    if oat is None:
        raise MissingProduct("oat milk (a product named '... oat milk ...')")
    api.track(
        {
            "event_type": "click_product",
            "user_id": user,
            "product_id": oat["product_id"],
            "context": {"search_query": query, "position": oat["rank"]},
        }
    )
    say(f"  scrolls to result {oat['rank'] + 1} and clicks '{oat['name']}'")
    yogurt = api.search(user, "yogurt")
    if not yogurt["results"]:
        raise MissingProduct("yogurt (search 'yogurt' finds nothing)")
    first = yogurt["results"][0]
    say(f"  search 'yogurt': {_top(yogurt['results'])}")
    passed = "plant-based" in first["attributes"] and yogurt["personalization"]["applied"]
    return Outcome(
        "new shopper, oat milk -> plant-based yogurt first",
        passed,
        f"first result '{first['name']}' (moved up {first['moved']} places)",
    )


def scrolled_past_spicy_chips(api: Api, say: Say, user: str = "demo-chips") -> Outcome:
    """Scenario 2: scrolling past every spicy chip and clicking "Original" pushes spicy down."""
    before = api.search(user, "chips", limit=20)["results"]
    spicy_before = [r["rank"] for r in before if "spicy" in r["attributes"]]
    if not spicy_before:
        raise MissingProduct("spicy chips (attribute 'spicy') among the first 20 results for 'chips'")
    mild = [r for r in before if "spicy" not in r["attributes"]]
    original = _first(mild, _named("original"), lambda result: True)
    if original is None:
        raise MissingProduct("chips that are not spicy among the first 20 results for 'chips'")
    scrolls = [
        {
            "event_type": "displayed_but_scrolled",
            "user_id": user,
            "product_id": r["product_id"],
            "context": {"search_query": "chips", "position": r["rank"]},
        }
        for r in before
        if "spicy" in r["attributes"]
    ]
    api.track(
        *scrolls,
        {
            "event_type": "click_product",
            "user_id": user,
            "product_id": original["product_id"],
            "context": {"search_query": "chips", "position": original["rank"]},
        },
    )
    say(f"  search 'chips': spicy chips at ranks {[r + 1 for r in spicy_before]}")
    say(f"  scrolls past all {len(scrolls)} spicy chips and clicks '{original['name']}'")
    after = api.search(user, "chips", limit=20)["results"]
    spicy_after = [r["rank"] for r in after if "spicy" in r["attributes"]]
    say(f"  search 'chips' again: spicy chips at ranks {[r + 1 for r in spicy_after]}")
    pushed_down = bool(spicy_before) and (
        not spicy_after
        or min(spicy_after) > max(spicy_before, default=0)
        or sum(spicy_after) / len(spicy_after) > sum(spicy_before) / len(spicy_before)
    )
    top5_before = sum(r < 5 for r in spicy_before)
    top5_after = sum(r < 5 for r in spicy_after)
    return Outcome(
        "spicy chips scrolled past -> pushed down",
        pushed_down and top5_after <= top5_before,
        f"spicy in top 20: {len(spicy_before)} -> {len(spicy_after)}, in top 5: {top5_before} -> {top5_after}",
    )


def bulk_buyer_gets_quantity_two(api: Api, say: Say, user: str = "demo-bulk") -> Outcome:
    """Scenario 3: after buying 2 gallons of milk, the suggested quantity is 2."""
    milk = api.search(user, "whole milk", limit=50)["results"]
    gallon = _first(milk, lambda r: r["unit"] == "gal" and r["size"] == 1.0, lambda result: True)
    if gallon is None:
        raise MissingProduct("whole milk (search 'whole milk' finds nothing)")
    api.track({"event_type": "purchase", "user_id": user, "product_id": gallon["product_id"], "quantity": 2})
    say(f"  buys 2 x '{gallon['name']}'")
    again = api.search(user, "whole milk", limit=50)["results"]
    suggested = next(r["suggested_quantity"] for r in again if r["product_id"] == gallon["product_id"])
    preferred = api.preferences(user)["preferred_quantities"]
    say(f"  search again: suggested quantity {suggested}; live preferences: {preferred}")
    return Outcome(
        "bulk buyer -> suggested quantity 2",
        suggested == 2 and preferred.get(gallon["product_id"]) == 2,
        f"suggested quantity {suggested}",
    )


SCENARIOS = (new_shopper_gets_plant_based_yogurt, scrolled_past_spicy_chips, bulk_buyer_gets_quantity_two)


def run_demo(
    base_url: str, say: Say = print, token_for: Callable[[str], str | None] = lambda user: None
) -> list[Outcome]:
    api = Api(base_url, token_for=token_for)
    outcomes = []
    run = uuid.uuid4().hex[:8]  # new shoppers every run: profiles are durable
    for number, scenario in enumerate(SCENARIOS, start=1):
        story = (scenario.__doc__ or "").partition(":")[2].strip()
        say(f"Scenario {number}: {story}")
        outcome = scenario(api, say, user=f"demo-{number}-{run}")
        say(f"  -> {'PASS' if outcome.passed else 'FAIL'}: {outcome.detail}\n")
        outcomes.append(outcome)
    return outcomes
