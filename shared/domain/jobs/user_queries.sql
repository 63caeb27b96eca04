-- Each shopper's own recent queries (last 90 days), most recent first, for their suggestions only.
SELECT user_id, query, searches, last_searched
FROM (
  SELECT user_id, LOWER(TRIM(search_query)) AS query, COUNT(*) AS searches,
         MAX(event_timestamp) AS last_searched
  FROM raw_user_actions
  WHERE event_type = 'search' AND search_query IS NOT NULL AND user_id IS NOT NULL
    AND event_timestamp < @window_end AND event_timestamp >= TIMESTAMP_SUB(@window_end, INTERVAL 90 DAY)
    AND LENGTH(TRIM(search_query)) > 0
  GROUP BY user_id, LOWER(TRIM(search_query))
)
QUALIFY ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY last_searched DESC, query) <= @per_shopper
