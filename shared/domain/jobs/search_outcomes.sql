-- Search impressions with their outcomes, the training data of learning to rank: one row per product
-- shown in a search answer (search_id, position), with whether the shopper who searched then clicked
-- it, added it to the cart or bought it in events carrying that search_id (all before the window's end).
SELECT
  i.search_id,
  i.user_id,
  i.session_id,
  i.event_timestamp AS searched_at,
  i.search_query,
  i.position,
  i.product_id,
  COALESCE(o.clicks, 0) > 0 AS clicked,
  COALESCE(o.cart_adds, 0) > 0 AS added_to_cart,
  COALESCE(o.purchases, 0) > 0 AS purchased,
  COALESCE(o.clicks, 0) AS clicks,
  COALESCE(o.cart_adds, 0) AS cart_adds,
  COALESCE(o.purchases, 0) AS purchases
FROM search_impressions AS i
LEFT JOIN (
  SELECT
    search_id,
    user_id,
    product_id,
    COUNTIF(event_type = 'click_product') AS clicks,
    COUNTIF(event_type = 'add_to_cart') AS cart_adds,
    COUNTIF(event_type = 'purchase') AS purchases
  FROM search_outcome_events
  WHERE event_timestamp < @window_end
  GROUP BY search_id, user_id, product_id
) AS o ON o.search_id = i.search_id AND o.user_id = i.user_id AND o.product_id = i.product_id
WHERE i.event_timestamp < @window_end
