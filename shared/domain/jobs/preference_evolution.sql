-- How each shopper's taste per category moves: signal strength in the last 7 days against the
-- 28 days before, per day, and a label for the direction.
WITH signals AS (
  SELECT user_id, product_category AS category, interaction_strength AS strength,
         TIMESTAMP_DIFF(@window_end, event_timestamp, HOUR) / 24 AS age_days
  FROM raw_user_actions
  WHERE event_timestamp < @window_end
    AND event_timestamp >= TIMESTAMP_SUB(@window_end, INTERVAL 35 DAY)
    AND product_category IS NOT NULL AND interaction_strength IS NOT NULL
),
windows AS (
  SELECT user_id, category,
         SUM(IF(age_days < 7, strength, 0)) / 7 AS recent_per_day,
         SUM(IF(age_days >= 7, strength, 0)) / 28 AS before_per_day
  FROM signals GROUP BY user_id, category
)
SELECT *, recent_per_day - before_per_day AS change,
  CASE
    WHEN recent_per_day - before_per_day > 0.02 THEN 'rising'
    WHEN recent_per_day - before_per_day < -0.02 THEN 'falling'
    ELSE 'steady'
  END AS trend
FROM windows
