-- Recency / frequency / spend segments per shopper at the window's end; a bulk buyer takes 2 or
-- more of a product on at least 30% of their lines.
WITH orders AS (
  SELECT user_id, order_id, MIN(ordered_at) AS ordered_at, SUM(quantity) AS items,
         SUM(COALESCE(price, 0) * quantity) AS spend, AVG(IF(quantity >= 2, 1, 0)) AS bulk_share
  FROM order_lines GROUP BY user_id, order_id
),
per_user AS (
  SELECT user_id, COUNT(*) AS orders, MIN(ordered_at) AS first_order, MAX(ordered_at) AS last_order,
         AVG(items) AS mean_items, AVG(spend) AS mean_spend, AVG(bulk_share) AS bulk_share
  FROM orders GROUP BY user_id
)
SELECT
  *,
  TIMESTAMP_DIFF(@window_end, last_order, HOUR) / 24 AS days_since_last,
  CASE
    WHEN orders = 1 THEN 'new'
    WHEN TIMESTAMP_DIFF(@window_end, last_order, HOUR) / 24 > 90 THEN 'lapsed'
    WHEN TIMESTAMP_DIFF(@window_end, last_order, HOUR) / 24 > 30 THEN 'at_risk'
    WHEN orders >= 10 THEN 'loyal'
    ELSE 'active'
  END AS segment,
  bulk_share >= 0.3 AS bulk_buyer
FROM per_user
