-- How many a shopper takes of a product: the lower median of their quantities (the last one while
-- they bought it once), so the bulk buyer of 2 gallons is suggested 2.
WITH lines AS (
  SELECT user_id, product_id, quantity, ordered_at,
         PERCENTILE_DISC(quantity, 0.5) OVER (PARTITION BY user_id, product_id) AS median_quantity
  FROM order_lines
)
SELECT user_id, product_id, COUNT(*) AS orders,
       ARRAY_AGG(quantity ORDER BY ordered_at DESC)[OFFSET(0)] AS last_quantity,
       CAST(ANY_VALUE(median_quantity) AS INT64) AS suggested_quantity
FROM lines GROUP BY user_id, product_id
