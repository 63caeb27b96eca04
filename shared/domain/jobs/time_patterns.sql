-- When each shopper orders: their most frequent hour of day and day of week (0 = Sunday, counted
-- from a known Sunday so both engines agree) and how concentrated their orders are on them.
WITH orders AS (
  SELECT user_id, order_id, MIN(ordered_at) AS ordered_at FROM order_lines GROUP BY user_id, order_id
),
slots AS (
  SELECT user_id, EXTRACT(HOUR FROM ordered_at) AS hour,
         MOD(DATE_DIFF(DATE(ordered_at), DATE '1970-01-04', DAY), 7) AS weekday
  FROM orders
),
hours AS (
  SELECT user_id, hour, COUNT(*) AS n, SUM(COUNT(*)) OVER (PARTITION BY user_id) AS total
  FROM slots GROUP BY user_id, hour
  QUALIFY ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY COUNT(*) DESC, hour) = 1
),
days AS (
  SELECT user_id, weekday, COUNT(*) AS n
  FROM slots GROUP BY user_id, weekday
  QUALIFY ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY COUNT(*) DESC, weekday) = 1
)
SELECT h.user_id, h.total AS orders, h.hour AS usual_hour, h.n / h.total AS hour_share,
       d.weekday AS usual_weekday, d.n / h.total AS weekday_share
FROM hours AS h JOIN days AS d ON d.user_id = h.user_id
