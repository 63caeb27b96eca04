-- Purchased order lines up to the window's end, one row per (order, product), returns netted out
-- of nothing (a return is a signal, not an un-purchase). Every other job reads this table.
SELECT
  o.user_id,
  COALESCE(o.order_id, o.event_id) AS order_id,
  o.product_id,
  ANY_VALUE(o.product_category) AS product_category,
  SUM(COALESCE(o.quantity, 1)) AS quantity,
  MAX(o.price) AS price,
  MIN(o.event_timestamp) AS ordered_at,
  ANY_VALUE(JSON_VALUE_ARRAY(r.product_attributes)) AS attributes,
  ANY_VALUE(JSON_VALUE(r.raw_event_data, '$.context.weather.condition')) AS weather
FROM order_events AS o
LEFT JOIN raw_user_actions AS r ON r.event_id = o.event_id
WHERE o.event_type = 'purchase' AND o.event_timestamp < @window_end
GROUP BY o.user_id, COALESCE(o.order_id, o.event_id), o.product_id
