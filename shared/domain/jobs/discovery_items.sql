-- Discovery: products similar to what a shopper buys (item_neighbours), never bought by them,
-- scored by summed similarity; the @discoveries best per shopper.
WITH bought AS (
  SELECT DISTINCT user_id, product_id FROM order_lines
),
candidates AS (
  SELECT b.user_id, n.other_id AS product_id, SUM(n.similarity) AS score, COUNT(*) AS because_of
  FROM bought AS b JOIN item_neighbours AS n ON n.product_id = b.product_id
  GROUP BY b.user_id, n.other_id
)
SELECT c.*
FROM candidates AS c
LEFT JOIN bought AS b ON b.user_id = c.user_id AND b.product_id = c.product_id
WHERE b.product_id IS NULL
QUALIFY ROW_NUMBER() OVER (PARTITION BY c.user_id ORDER BY c.score DESC, c.product_id) <= @discoveries
