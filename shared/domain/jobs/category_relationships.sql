-- Categories bought in the same basket more often than chance (lift), e.g. pasta and sauce.
WITH baskets AS (
  SELECT DISTINCT user_id, order_id, product_category AS category FROM order_lines WHERE product_category IS NOT NULL
),
totals AS (
  SELECT COUNT(DISTINCT CONCAT(user_id, '/', order_id)) AS n FROM baskets
),
singles AS (
  SELECT category, COUNT(*) AS orders FROM baskets GROUP BY category
),
pairs AS (
  SELECT a.category, b.category AS other_category, COUNT(*) AS orders
  FROM baskets AS a
  JOIN baskets AS b ON a.user_id = b.user_id AND a.order_id = b.order_id AND a.category <> b.category
  GROUP BY a.category, b.category
)
SELECT p.category, p.other_category, p.orders, p.orders / sa.orders AS confidence,
       (p.orders / sa.orders) / (sb.orders / t.n) AS lift
FROM pairs AS p
CROSS JOIN totals AS t
JOIN singles AS sa ON sa.category = p.category
JOIN singles AS sb ON sb.category = p.other_category
