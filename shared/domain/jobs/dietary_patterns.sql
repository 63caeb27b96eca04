-- Dietary patterns: an attribute (organic, vegan, gluten-free, ...) on at least @min_share of a
-- shopper's purchased lines, over at least @min_lines lines.
WITH lines AS (
  SELECT user_id, COUNT(*) AS lines FROM order_lines GROUP BY user_id
),
tagged AS (
  SELECT l.user_id, LOWER(attribute) AS attribute, COUNT(*) AS lines
  FROM order_lines AS l, UNNEST(l.attributes) AS attribute
  GROUP BY l.user_id, LOWER(attribute)
)
SELECT t.user_id, t.attribute, t.lines, t.lines / l.lines AS share
FROM tagged AS t JOIN lines AS l ON l.user_id = t.user_id
WHERE l.lines >= @min_lines AND t.lines / l.lines >= @min_share
