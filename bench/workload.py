"""Simulated shoppers: realistic event streams over a catalog, deterministic per seed."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from shared.domain.catalog import Catalog, Product
from shared.domain.events import Interaction
from shared.domain.nextbasket import Basket, Histories

QUERIES = (
    "milk", "oat milk", "greek yogurt", "yogurt", "chips", "spicy chips", "organic eggs", "gluten free bread",
    "coffee", "ice cream", "pasta", "vegan cheese", "sparkling water", "almonds", "chicken breast",
    "orange juice", "cereal", "hot sauce", "butter", "bananas", "spinach", "plant based burger", "cheddar",
)  # fmt: skip
# An active shopper's week: mostly browsing, some cart changes, a few purchases.
MIX = (
    ("view_details", 30), ("click_product", 25), ("displayed_but_scrolled", 15), ("time_on_product", 8),
    ("add_to_cart", 10), ("quantity_increase", 2), ("remove_from_cart", 2), ("purchase", 6), ("returned", 1),
    ("save_for_later", 1),
)  # fmt: skip
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def shopper_events(
    by_category: dict[str, list[Product]], user_id: str, count: int, rng: random.Random
) -> list[Interaction]:
    """`count` events of one shopper over two weeks, drawn from a personal pool of products."""
    categories = rng.sample(sorted(by_category), 3)
    pool = [p for c in categories for p in by_category[c]]
    favourites = rng.sample(pool, min(10, len(pool)))
    kinds, weights = zip(*MIX, strict=True)
    events = []
    for i in range(count):
        kind = rng.choices(kinds, weights)[0]
        product = rng.choice(favourites)
        context = {"time_on_page": rng.uniform(5, 90)} if kind == "time_on_product" else {}
        events.append(
            Interaction(
                event_id=f"{user_id}-{i}",
                event_type=kind,
                user_id=user_id,
                product_id=product.id,
                quantity=rng.choice((1, 1, 1, 2)) if kind == "purchase" else 1,
                timestamp=NOW - timedelta(seconds=rng.uniform(0, 14 * 86_400)),
                context=context,
            )
        )
    events.sort(key=lambda e: e.timestamp)
    return events


def shoppers(catalog: Catalog, users: int, events_per_user: int, seed: int = 1) -> Iterator[list[Interaction]]:
    rng = random.Random(seed)
    by_category: dict[str, list[Product]] = defaultdict(list)
    for product in catalog.products:
        by_category[product.category].append(product)
    for u in range(users):
        yield shopper_events(by_category, f"user-{u}", events_per_user, rng)


def purchase_histories(catalog: Catalog, users: int, orders: int, seed: int = 1) -> Histories:
    """Order histories with planted preferences, to train a ranking model on: each shopper has three
    favourite categories and nine staples in them (each in about half of their orders), tries a
    few other products of those categories, and adds some of the store's best sellers (Zipf)."""
    rng = random.Random(seed)
    by_category: dict[str, list[str]] = defaultdict(list)
    for product in catalog.products:
        by_category[product.category].append(product.id)
    categories = sorted(by_category)
    sellers = rng.sample([p.id for p in catalog.products], min(2_000, len(catalog.products)))
    zipf = [1 / (rank + 1) for rank in range(len(sellers))]
    histories: dict[str, list[Basket]] = {}
    for u in range(users):
        favourites = rng.sample(categories, min(3, len(categories)))
        staples = [rng.choice(by_category[c]) for c in favourites for _ in range(3)]
        baskets, day = [], 0.0
        for _ in range(orders):
            basket = {p for p in staples if rng.random() < 0.5}
            basket.update(rng.choice(by_category[rng.choice(favourites)]) for _ in range(rng.randint(1, 3)))
            basket.update(rng.choices(sellers, zipf, k=rng.randint(1, 3)))
            baskets.append(Basket(tuple(sorted(basket)), day))
            day += rng.uniform(4, 10)  # about weekly
        histories[f"shopper-{u}"] = baskets
    return histories
