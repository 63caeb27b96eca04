-- What is rising in the store: each product's orders in the last 7 days over its weekly rate in the
-- 28 days before, plus one (a steady seller scores about 1, a rising one more); of the products with
-- at least @min_recent recent orders, the @top by that ratio.
WITH counts AS (
  SELECT
    product_id,
    COUNT(DISTINCT IF(ordered_at >= TIMESTAMP_SUB(@window_end, INTERVAL 7 DAY), order_id, NULL)) AS recent,
    COUNT(DISTINCT IF(ordered_at < TIMESTAMP_SUB(@window_end, INTERVAL 7 DAY), order_id, NULL)) AS prior
  FROM order_lines
  WHERE ordered_at < @window_end AND ordered_at >= TIMESTAMP_SUB(@window_end, INTERVAL 35 DAY)
  GROUP BY product_id
)
SELECT product_id, recent, prior, recent / (prior / 4 + 1) AS trend
FROM counts
WHERE recent >= @min_recent
ORDER BY trend DESC, product_id
LIMIT @top
