-- Trips, revenue and average distance per pickup zone and day, from the
-- enriched taxi trips (pickup_zone is the enricher's lookup join).
-- Incremental: a run rebuilds the last 3 days (late trips), a backfill
-- ('sluice jobs run --from 2025-01-01') the days it names.
{{ config(materialized='incremental', lookback='3d') }}
SELECT CAST(tpep_pickup_datetime AS DATE) AS event_date,
       pickup_borough AS borough, pickup_zone AS zone,
       count(*) AS trips,
       round(sum(total_amount), 2) AS revenue,
       round(avg(trip_distance), 2) AS avg_distance
FROM {{ ref('yellow_taxi_trip') }}
WHERE CAST(tpep_pickup_datetime AS DATE) >= {{ start }} AND CAST(tpep_pickup_datetime AS DATE) < {{ end }}
GROUP BY ALL
