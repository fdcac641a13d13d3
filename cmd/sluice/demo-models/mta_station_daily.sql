-- Entries and exits per station and day, from the aggregator's daily
-- windows of each turnstile's cumulative counters.
SELECT CAST(window_start AS DATE) AS event_date, "STATION" AS station,
       sum(entries) AS entries, sum(exits) AS exits, count(*) AS turnstiles
FROM {{ ref('agg_turnstile_daily') }}
GROUP BY ALL
