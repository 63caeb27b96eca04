-- Reorder prediction per (shopper, product) bought on at least 2 distinct days: cycle = median gap
-- in days between purchase days; confidence = regularity x support (regularity = 1 - mean absolute
-- deviation / median, floored at 0; support = gaps / (gaps + 2)), as graph memory's reorder_cycle;
-- next expected = last purchase day + cycle.
WITH days AS (
  SELECT user_id, product_id, DATE(ordered_at) AS day FROM order_lines GROUP BY user_id, product_id, DATE(ordered_at)
),
gaps AS (
  SELECT user_id, product_id, day,
         DATE_DIFF(day, LAG(day) OVER (PARTITION BY user_id, product_id ORDER BY day), DAY) AS gap
  FROM days
),
medians AS (
  SELECT user_id, product_id, gap, PERCENTILE_CONT(gap, 0.5) OVER (PARTITION BY user_id, product_id) AS cycle_days
  FROM gaps WHERE gap IS NOT NULL
),
cycles AS (
  SELECT user_id, product_id, COUNT(*) AS gaps, ANY_VALUE(cycle_days) AS cycle_days,
         AVG(ABS(gap - cycle_days)) AS deviation
  FROM medians GROUP BY user_id, product_id
),
last_days AS (
  SELECT user_id, product_id, MAX(day) AS last_day FROM days GROUP BY user_id, product_id
)
SELECT c.user_id, c.product_id, c.gaps, c.cycle_days, l.last_day,
       GREATEST(0, 1 - c.deviation / c.cycle_days) * c.gaps / (c.gaps + 2) AS confidence,
       DATE_ADD(l.last_day, INTERVAL CAST(ROUND(c.cycle_days) AS INT64) DAY) AS next_expected
FROM cycles AS c JOIN last_days AS l ON l.user_id = c.user_id AND l.product_id = c.product_id
WHERE c.cycle_days > 0
