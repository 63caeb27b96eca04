-- Collaborative filtering, item to item: cosine similarity of two products over who bought them
-- (each shopper's @max_items_per_user most recent products, which bounds the self-join), the
-- @neighbours most similar per product, with at least @min_shared_buyers buyers in common.
WITH recent AS (
  SELECT user_id, product_id
  FROM (SELECT user_id, product_id, MAX(ordered_at) AS last_at FROM order_lines GROUP BY user_id, product_id)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY last_at DESC, product_id) <= @max_items_per_user
),
buyers AS (
  SELECT product_id, COUNT(*) AS n FROM recent GROUP BY product_id
),
shared AS (
  SELECT a.product_id, b.product_id AS other_id, COUNT(*) AS buyers
  FROM recent AS a JOIN recent AS b ON a.user_id = b.user_id AND a.product_id <> b.product_id
  GROUP BY a.product_id, b.product_id
  HAVING COUNT(*) >= @min_shared_buyers
)
SELECT s.product_id, s.other_id, s.buyers, s.buyers / SQRT(ba.n * bb.n) AS similarity
FROM shared AS s
JOIN buyers AS ba ON ba.product_id = s.product_id
JOIN buyers AS bb ON bb.product_id = s.other_id
QUALIFY ROW_NUMBER() OVER (PARTITION BY s.product_id ORDER BY s.buyers / SQRT(ba.n * bb.n) DESC, s.other_id)
  <= @neighbours
