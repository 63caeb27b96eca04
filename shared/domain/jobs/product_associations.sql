-- Bought together: for each ordered pair of products in at least @min_pair_orders baskets,
-- support (share of all baskets), confidence (share of a's baskets that hold b) and lift.
WITH baskets AS (
  SELECT DISTINCT user_id, order_id, product_id FROM order_lines
),
totals AS (
  SELECT COUNT(DISTINCT CONCAT(user_id, '/', order_id)) AS n FROM baskets
),
singles AS (
  SELECT product_id, COUNT(*) AS orders FROM baskets GROUP BY product_id
),
pairs AS (
  SELECT a.product_id AS product_id, b.product_id AS other_id, COUNT(*) AS orders
  FROM baskets AS a
  JOIN baskets AS b ON a.user_id = b.user_id AND a.order_id = b.order_id AND a.product_id <> b.product_id
  GROUP BY a.product_id, b.product_id
  HAVING COUNT(*) >= @min_pair_orders
)
SELECT
  p.product_id,
  p.other_id,
  p.orders,
  p.orders / t.n AS support,
  p.orders / sa.orders AS confidence,
  (p.orders / sa.orders) / (sb.orders / t.n) AS lift
FROM pairs AS p
CROSS JOIN totals AS t
JOIN singles AS sa ON sa.product_id = p.product_id
JOIN singles AS sb ON sb.product_id = p.other_id
