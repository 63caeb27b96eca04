-- The original design's aggregate: each shopper's cohort (the week of their first order) and how
-- many weeks since then they ordered in.
WITH weeks AS (
  SELECT user_id, DATE_TRUNC(DATE(ordered_at), WEEK) AS week FROM order_lines GROUP BY user_id, DATE_TRUNC(DATE(ordered_at), WEEK)
)
SELECT user_id, MIN(week) AS cohort_week, COUNT(*) AS active_weeks,
       DATE_DIFF(DATE(@window_end), MIN(week), DAY) / 7 AS weeks_since_first
FROM weeks GROUP BY user_id
