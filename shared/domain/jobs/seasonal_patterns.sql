-- Seasonality per category: its share of the lines bought in each calendar month against its
-- share over the whole history (index > 1: bought more than usual in that month).
WITH lines AS (
  SELECT product_category AS category, EXTRACT(MONTH FROM ordered_at) AS month
  FROM order_lines WHERE product_category IS NOT NULL
),
per_month AS (
  SELECT category, month, COUNT(*) AS lines FROM lines GROUP BY category, month
),
month_totals AS (
  SELECT month, SUM(lines) AS lines FROM per_month GROUP BY month
),
overall AS (
  SELECT category, SUM(lines) / (SELECT SUM(lines) FROM per_month) AS share FROM per_month GROUP BY category
)
SELECT p.category, p.month, p.lines, p.lines / t.lines AS month_share, o.share AS overall_share,
       (p.lines / t.lines) / o.share AS seasonal_index
FROM per_month AS p
JOIN month_totals AS t ON t.month = p.month
JOIN overall AS o ON o.category = p.category
