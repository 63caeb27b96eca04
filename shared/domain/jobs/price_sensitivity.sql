-- Price sensitivity per shopper: the mean log ratio of what they paid to the median price in the
-- category, shrunk toward 0 by @prior_lines pseudo-lines; budget below -0.1, premium above 0.1.
WITH medians AS (
  SELECT DISTINCT product_category, PERCENTILE_CONT(price, 0.5) OVER (PARTITION BY product_category) AS median_price
  FROM order_lines WHERE price > 0 AND product_category IS NOT NULL
),
ratios AS (
  SELECT l.user_id, LN(l.price / m.median_price) AS log_ratio
  FROM order_lines AS l JOIN medians AS m ON m.product_category = l.product_category
  WHERE l.price > 0 AND m.median_price > 0
),
per_user AS (
  SELECT user_id, COUNT(*) AS lines, SUM(log_ratio) / (COUNT(*) + @prior_lines) AS sensitivity
  FROM ratios GROUP BY user_id
)
SELECT *, CASE WHEN sensitivity < -0.1 THEN 'budget' WHEN sensitivity > 0.1 THEN 'premium' ELSE 'neutral' END AS tier
FROM per_user
