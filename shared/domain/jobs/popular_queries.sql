-- The store's frequent queries over the last 90 days, for instant suggestions: only those that at
-- least @min_shoppers distinct shoppers searched (a query one shopper typed is never shown to
-- others; serving may ask for more); the @top most searched.
SELECT
  LOWER(TRIM(search_query)) AS query,
  COUNT(*) AS searches,
  COUNT(DISTINCT user_id) AS shoppers
FROM raw_user_actions
WHERE event_type = 'search' AND search_query IS NOT NULL AND user_id IS NOT NULL
  AND event_timestamp < @window_end AND event_timestamp >= TIMESTAMP_SUB(@window_end, INTERVAL 90 DAY)
  AND LENGTH(TRIM(search_query)) > 0
GROUP BY LOWER(TRIM(search_query))
HAVING COUNT(DISTINCT user_id) >= @min_shoppers
ORDER BY searches DESC, query
LIMIT @top
