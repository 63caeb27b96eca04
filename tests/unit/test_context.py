"""The context engine: the shopper's moment, lifts learnt by moment, their tuned weight, and how
search and recommendations apply them."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from shared.domain.catalog import Product
from shared.domain.context import (
    STORE_TOP,
    ContextCounter,
    ContextLift,
    Moment,
    PastOrder,
    SlotCounts,
    lift_context,
    lifts_document,
    lifts_of,
    nested,
    reason,
    tuned_weight,
)
from shared.domain.ranking import Ranked
from shared.domain.recommendations import RecommendationRequest
from shared.domain.rules import ContextRules, parse_rules
from shared.domain.search import MAX_CONTEXT_EXTRA_BYTES, SearchContext, SearchRequest
from tests.unit.test_recommendations import ask, served

SATURDAY_MORNING_NY = datetime(2026, 12, 5, 8, 30, tzinfo=timezone(timedelta(hours=-5)))


# -- the moment ----------------------------------------------------------------------------------
def test_a_local_time_gives_weekday_part_of_day_meal_and_season():
    moment = Moment.at(SATURDAY_MORNING_NY)
    assert moment.described() == {
        "weekday": "saturday",
        "daypart": "morning",
        "meal": "breakfast",
        "season": "winter",
        "weather": None,
    }
    assert moment.store_slots() == ["when:6:morning", "season:winter"]
    assert moment.shopper_slots() == ["part:morning", "weekday:6"]


@pytest.mark.parametrize(
    ("hour", "part", "meal"),
    [(4, "night", "snack"), (5, "morning", "breakfast"), (10, "morning", "breakfast"), (11, "midday", "lunch"),
     (15, "afternoon", "snack"), (17, "evening", "dinner"), (20, "evening", "dinner"), (21, "night", "snack"),
     (0, "night", "snack")],
)  # fmt: skip
def test_parts_of_the_day_and_their_meals(hour, part, meal):
    moment = Moment(weekday=0, hour=hour)
    assert (moment.daypart.name, moment.daypart.meal) == (part, meal)
    assert moment.season is None and moment.store_slots() == [f"when:0:{part}"]  # no month: no season slot


def test_seasons_by_month_and_weather_as_a_slot():
    seasons = [Moment(0, 12, month).season for month in range(1, 13)]
    assert seasons == ["winter"] * 2 + ["spring"] * 3 + ["summer"] * 3 + ["autumn"] * 3 + ["winter"]
    assert Moment(0, 12, 7, "rain").store_slots() == ["when:0:midday", "season:summer", "weather:rain"]


def test_reasons_read_as_sentences():
    assert reason("when:6:morning") == "Popular on Saturday mornings"
    assert reason("season:summer") == "Popular in summer"
    assert reason("weather:rain") == "Popular when it rains"
    assert reason("part:evening") == "You often buy this in the evening"
    assert reason("weekday:0") == "You often buy this on Sundays"


def test_the_request_context_is_typed_and_bounded():
    context = SearchContext.model_validate(
        {"local_time": "2026-12-05T08:30:00-05:00", "weather": {"condition": "snow", "temperature": -3}}
    )
    assert context.moment(datetime(2026, 1, 1, tzinfo=UTC), "UTC") == Moment(6, 8, 12, "snow")
    # No local time: now in the store's time zone (23:30 UTC on a Saturday is 18:30 in New York).
    assert SearchContext().moment(datetime(2026, 12, 5, 23, 30, tzinfo=UTC), "America/New_York") == Moment(6, 18, 12)
    for bad, field in [
        ({"local_time": "2026-12-05T08:30:00"}, "local_time"),  # no offset: whose morning?
        ({"weather": {"condition": "sunny"}}, "weather.condition"),
        ({"weather": {"condition": "rain", "temperature": 99}}, "weather.temperature"),
        ({"notes": "x" * MAX_CONTEXT_EXTRA_BYTES}, "context"),  # other keys are kept, within a bound
    ]:
        with pytest.raises(ValidationError) as error:
            SearchRequest.model_validate({"query": "milk", "context": bad})
        assert f"context.{field}".removesuffix(".context") in str(error.value)


def test_the_store_time_zone_is_checked_when_the_rules_load(rules):
    data = rules.model_dump() | {"context": {"timezone": "Mars/Olympus"}}
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        parse_rules(data)
    assert parse_rules(rules.model_dump() | {"context": {"timezone": "Europe/Paris"}}).context.weight is None


# -- learning lifts ------------------------------------------------------------------------------
def test_lifts_are_shares_in_the_slot_over_usual_shares_smoothed_by_prior_lines():
    counts = SlotCounts()
    counts.add("milk", ["a"], 30)
    counts.add("chips", ["b"], 10)
    lifts = {(slot, category): lift for slot, category, lift in counts.lifts(prior_lines=20)}
    # milk: 30 of 40 lines (0.75); in slot a 30 of 30, with 20 prior lines at 0.75: (30 + 15) / 50 / 0.75
    assert lifts == {("a", "milk"): 1.2, ("b", "chips"): round((10 + 5) / 30 / 0.25, 3)}
    counts.add("milk", ["c"], 3)  # slot c holds the usual shares: lift 1, not published (nor a's and b's moved)
    counts.add("chips", ["c"], 1)
    assert {(s, c) for s, c, _ in counts.lifts(prior_lines=20)} == {("a", "milk"), ("b", "chips")}
    assert [entry[:2] for entry in counts.lifts(20, top=1)] == [("b", "chips")]  # the strongest first


def test_the_store_counts_every_line_and_each_shopper_their_own():
    counter = ContextCounter()
    evening, morning = Moment(5, 19), Moment(1, 8)
    for _ in range(10):
        counter.add("ann", "Chips", evening)
        counter.add("ann", "milk", morning)
        counter.add("bob", "milk", morning)
    shoppers = counter.take_shoppers()
    assert {(s, c) for s, c, _ in shoppers["ann"]} == {("part:evening", "chips"), ("weekday:5", "chips"),
                                                       ("part:morning", "milk"), ("weekday:1", "milk")}  # fmt: skip
    assert shoppers["bob"] == []  # all his lines in one slot: no lift
    assert counter.take_shoppers() == {}  # taken: a job holds one chunk of shoppers at a time
    store = nested(counter.store_lifts())
    assert store["when:5:evening"]["chips"] > 1 > store["when:5:evening"].get("milk", 0.99)
    assert len(counter.store_lifts()) <= STORE_TOP
    assert lifts_of(lifts_document(counter.store_lifts())) == store  # as the snapshot keeps them


def _orders(rng: random.Random, signal: bool) -> list[PastOrder]:
    """Ten orders: with `signal`, ice cream in the evening and coffee in the morning; without, anywhere."""
    orders = []
    for _ in range(10):
        evening = rng.random() < 0.5
        moment = Moment(3, 19 if evening else 8)
        treat = ("ice-cream", "ice cream") if (evening if signal else rng.random() < 0.5) else ("coffee", "coffee")
        orders.append(PastOrder(moment, (treat, ("bread", "bakery"))))
    return orders


@pytest.mark.parametrize("signal", [True, False])
def test_the_weight_is_tuned_on_each_shoppers_last_order_and_zero_without_signal(signal):
    rng = random.Random(7)
    histories = {f"s{n}": _orders(rng, signal) for n in range(60)}
    counter = ContextCounter()
    for user, orders in histories.items():
        for order in orders:
            counter.add_order(user, order)
    weight, tuning = tuned_weight(histories, nested(counter.store_lifts()), cap=1.0)
    scores = tuning["ndcg@10"]
    assert tuning["shoppers"] == 60 and set(scores) == {0.0, 0.02, 0.05, 0.1, 0.2, 0.4}
    if signal:
        assert weight > 0 and scores[weight] > scores[0.0]
    else:
        assert weight == 0.0  # context did not help these orders: it is not applied


# -- applying ------------------------------------------------------------------------------------
def product(pid: str, category: str) -> Product:
    return Product(id=pid, name=pid, category=category, department="food")


def test_lift_is_weighted_bounded_and_only_for_good_matches_with_a_reason_when_strong():
    ranked = [
        Ranked(product("bread", "bakery"), 1.0, 0, 1.0),
        Ranked(product("ice-cream", "ice cream"), 0.9, 1, 0.95),
        Ranked(product("cone", "ice cream"), 0.1, 2, 0.9),  # a weak match: never lifted
    ]
    store = {"when:3:evening": {"ice cream": 1.5, "bakery": 0.9}}
    context = ContextLift(Moment(3, 19), store, {"part:evening": {"ice cream": 20.0}}, weight=0.1)
    lifted, why = lift_context(ranked, context, ContextRules(cap=1.0), min_relevance=0.5)
    assert [r.product.id for r in lifted] == ["ice-cream", "bread", "cone"]
    assert lifted[0].score == pytest.approx(0.95 + 0.1 * 1.0)  # log(1.5) + log(20) capped at 1
    assert lifted[1].score == pytest.approx(1.0 + 0.1 * math.log(0.9))
    assert why == {"ice-cream": "You often buy this in the evening"}  # the strongest lift behind it
    unmoved, still = lift_context(ranked, ContextLift(Moment(3, 19), store, {}, weight=0.0), ContextRules(), 0.5)
    assert unmoved == ranked and still == {"ice-cream": "Popular on Wednesday evenings"}  # true, if not used


# -- in search and recommendations ------------------------------------------------------------------
CONTEXT = {"lifts": lifts_document([("when:6:morning", "chips", 3.0)]), "weight": 0.4, "tuning": {}}


def test_search_lifts_what_sells_in_the_shoppers_moment_and_says_so(rules, small_catalog):
    search, _ = served(rules, small_catalog, store=[("store", [("context", CONTEXT)])])
    plain = search.search(SearchRequest(query="oat chips"))
    assert plain["context"]["applied"] is True and plain["context"]["weekday"] == "sunday"  # NOW: Sunday midnight
    request = SearchRequest.model_validate({"query": "oat chips", "context": {"local_time": SATURDAY_MORNING_NY}})
    answer = search.search(request)
    assert answer["context"] == {
        "weekday": "saturday",
        "daypart": "morning",
        "meal": "breakfast",
        "season": "winter",
        "weather": None,
        "applied": True,
    }
    chips = [r for r in answer["results"] if r["category"] == "chips"]
    assert chips and all("Popular on Saturday mornings" in r["badges"] for r in chips)
    assert answer["results"][0]["category"] == "chips"
    opted_out = search.search(
        request.model_copy(update={"context": request.context.model_copy(update={"personalization": False})})
    )
    assert opted_out["context"]["applied"] is False and not any(
        "Saturday" in b for r in opted_out["results"] for b in r["badges"]
    )


def test_the_stores_weight_override_and_the_shoppers_own_lifts(rules, small_catalog):
    off = rules.model_copy(update={"context": ContextRules(weight=0.0)})
    search, _ = served(off, small_catalog, store=[("store", [("context", CONTEXT)])])
    request = SearchRequest.model_validate({"query": "oat chips", "context": {"local_time": SATURDAY_MORNING_NY}})
    assert search.search(request)["context"]["applied"] is False  # the store turned context off
    mine = {"u": {"bought": ["oat-milk"], "context": lifts_document([("part:morning", "yogurt", 2.0)])}}
    search, _ = served(rules, small_catalog, documents=mine)
    answer = ask(search, surface="for_you", user_id="u", context={"local_time": SATURDAY_MORNING_NY.isoformat()})
    yogurts = [r for r in answer["results"] if r["category"] == "yogurt"]
    assert yogurts and all("You often buy this in the morning" in r["badges"] for r in yogurts)
    assert answer["context"]["applied"] is False  # no weight was published: the reasons, no lift


def test_recommendations_take_the_context_and_refuse_an_oversized_one():
    request = RecommendationRequest.model_validate(
        {
            "surface": "trending",
            "context": {"local_time": "2026-07-04T12:00:00+02:00", "weather": {"condition": "clear"}},
        }
    )
    assert request.context.moment(datetime(2026, 1, 1, tzinfo=UTC), "UTC") == Moment(6, 12, 7, "clear")
    with pytest.raises(ValidationError, match="context"):
        RecommendationRequest.model_validate({"surface": "trending", "context": {"x": "y" * 3000}})
