-- The original design's aggregate: each shopper's decayed signal strength per category
-- (weight x @daily_decay ^ age in days, every tracked signal), with counts.
SELECT
  user_id,
  product_category AS category,
  SUM(interaction_strength * POW(@daily_decay, TIMESTAMP_DIFF(@window_end, event_timestamp, HOUR) / 24)) AS score,
  COUNT(*) AS signals,
  COUNTIF(event_type = 'purchase') AS purchases,
  MAX(event_timestamp) AS last_signal
FROM raw_user_actions
WHERE event_timestamp < @window_end AND product_category IS NOT NULL AND interaction_strength IS NOT NULL
GROUP BY user_id, product_category
