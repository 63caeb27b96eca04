-- The original design's aggregate: per product, what shoppers did with it in the last 30 days.
SELECT
  product_id,
  ANY_VALUE(product_category) AS category,
  COUNTIF(event_type IN ('view_details', 'time_on_product')) AS views,
  COUNTIF(event_type = 'click_product') AS clicks,
  COUNTIF(event_type = 'add_to_cart') AS cart_adds,
  COUNTIF(event_type = 'purchase') AS purchases,
  COUNT(DISTINCT IF(event_type = 'purchase', user_id, NULL)) AS buyers,
  SAFE_DIVIDE(COUNTIF(event_type = 'purchase'), COUNTIF(event_type IN ('click_product', 'view_details'))) AS conversion
FROM raw_user_actions
WHERE event_timestamp < @window_end AND event_timestamp >= TIMESTAMP_SUB(@window_end, INTERVAL 30 DAY)
  AND product_id IS NOT NULL
GROUP BY product_id
