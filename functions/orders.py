"""HTTP: POST /api/orders/confirm: a confirmed order updates the shopper's profile at once."""

from __future__ import annotations

import flask
import functions_framework

from functions.http import authorize, endpoint, json_body, validate
from shared.bootstrap import container
from shared.domain.orders import Order


@functions_framework.http
@endpoint("POST")
def confirm_order(request: flask.Request) -> tuple[int, dict]:
    order = validate(Order, json_body(request))
    authorize(request, order.user_id)  # an order is the shopper's: no anonymous purchases are learnt
    return 200, container().orders.confirm(order)
