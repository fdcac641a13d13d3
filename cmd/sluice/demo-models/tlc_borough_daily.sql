-- Trips and revenue per borough and day, over the zone model: a view,
-- so it is never stale and costs nothing to keep; sluice query and the
-- models that read it run its SQL.
{{ config(materialized='view') }}
SELECT event_date, borough, sum(trips) AS trips, round(sum(revenue), 2) AS revenue
FROM {{ ref('tlc_daily_zone') }}
GROUP BY ALL
