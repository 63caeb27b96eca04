"""Simulated shoppers for locust (bench/load.py runs it): each browses with a realistic mix of
calls: mostly tracking and search, some preference reads, now and then an order."""

from __future__ import annotations

import random
import uuid

from locust import HttpUser, between, task

QUERIES = ["milk", "yogurt", "oat milk", "chips", "bread", "coffee", "organic eggs", "cheese", "apples", "pasta"]
PRODUCTS = [f"p{n:05d}" for n in range(0, 5000, 7)]  # ids of the generated demo catalog
SHOPPERS = 1000


class Shopper(HttpUser):
    wait_time = between(0.05, 0.3)  # a busy frontend: a shopper's calls come in quick bursts

    def on_start(self) -> None:
        self.user_id = f"load-{random.randrange(SHOPPERS)}"

    @task(10)
    def track(self) -> None:
        kind = random.choice(["click_product", "view_details", "add_to_cart", "displayed_but_scrolled"])
        event = {"event_type": kind, "user_id": self.user_id, "product_id": random.choice(PRODUCTS)}
        self.client.post("/api/interactions/track", json=event, name="track")

    @task(6)
    def search(self) -> None:
        body = {"query": random.choice(QUERIES), "user_id": self.user_id, "limit": 20}
        self.client.post("/api/search/personalized", json=body, name="search")

    @task(2)
    def preferences(self) -> None:
        self.client.get(f"/api/users/{self.user_id}/preferences/live", name="preferences")

    @task(1)
    def order(self) -> None:
        items = [{"product_id": p, "quantity": random.randint(1, 3)} for p in random.sample(PRODUCTS, 3)]
        body = {"order_id": uuid.uuid4().hex, "user_id": self.user_id, "items": items}
        self.client.post("/api/orders/confirm", json=body, name="order")
