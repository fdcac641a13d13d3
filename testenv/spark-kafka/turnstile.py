"""The seed's MTA job in Spark Structured Streaming, written for this test:
turnstile audits as CSV lines on a Kafka topic, deduplicated on the
reading's identity, counted and summed per turnstile in 4-hour tumbling
windows of their event time. It reads the topic from the start until it
has read everything there (trigger availableNow), on local[2], and writes
every window as one JSON line. It prints {"seconds": ...}: the time from
the query's start to its end, without the Spark session's start.

The Spark Structured Streaming test (cmd/sluice) and the peers benchmark
(cmd/sluicebench) run it.

Usage: python turnstile.py BOOTSTRAP TOPIC KAFKA_JARS_DIR OUT_FILE
"""
import glob
import json
import os
import sys
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

bootstrap, topic, jars_dir, out_file = sys.argv[1:5]
# Spark's Kafka source and what it needs beyond Spark itself.
jars = [j for pattern in ("spark-sql-kafka-*.jar", "spark-token-provider-kafka-*.jar", "kafka-clients-*.jar", "commons-pool2-*.jar")
        for j in glob.glob(os.path.join(jars_dir, pattern))]
spark = (SparkSession.builder.master("local[2]").appName("sluice-turnstile-check")
         .config("spark.jars", ",".join(jars))
         .config("spark.sql.shuffle.partitions", "4")
         .config("spark.ui.enabled", "false")
         .config("spark.sql.session.timeZone", "UTC")
         .getOrCreate())
spark.sparkContext.setLogLevel("WARN")

schema = ("`C/A` STRING, UNIT STRING, SCP STRING, STATION STRING, LINENAME STRING, DIVISION STRING, "
          "DATE STRING, TIME STRING, DESC STRING, ENTRIES BIGINT, EXITS BIGINT")
started = time.monotonic()
lines = (spark.readStream.format("kafka")
         .option("kafka.bootstrap.servers", bootstrap)
         .option("subscribe", topic)
         .option("startingOffsets", "earliest")
         .load()
         .selectExpr("CAST(value AS STRING) AS line"))
readings = (lines.select(F.from_csv("line", schema).alias("r")).select("r.*")
            .where(F.col("`C/A`") != "C/A")  # the header line
            .withColumn("ts", F.to_timestamp(F.concat_ws(" ", "DATE", "TIME"), "MM/dd/yyyy HH:mm:ss"))
            .where(F.col("ts").isNotNull())
            .dropDuplicates(["C/A", "UNIT", "SCP", "STATION", "DATE", "TIME"]))
windows = (readings.groupBy(F.window("ts", "4 hours"), "C/A", "UNIT", "SCP", "STATION", "LINENAME", "DIVISION", "DATE", "DESC")
           .agg(F.count(F.lit(1)).alias("readings"), F.sum("ENTRIES").alias("entries"), F.sum("EXITS").alias("exits")))

result = {}


def keep(batch, _):
    rows = batch.select(F.date_format("window.start", "yyyy-MM-dd'T'HH:mm:ss").alias("window_start"),
                        "C/A", "UNIT", "SCP", "STATION", "LINENAME", "DIVISION", "DATE", "DESC", "readings", "entries", "exits").collect()
    result.clear()  # complete mode: every batch holds every window
    for r in rows:
        result[json.dumps([r["window_start"], r["C/A"], r["UNIT"], r["SCP"], r["STATION"], r["LINENAME"], r["DIVISION"], r["DATE"], r["DESC"]])] = r


query = windows.writeStream.outputMode("complete").foreachBatch(keep).trigger(availableNow=True).start()
query.awaitTermination()
seconds = time.monotonic() - started
with open(out_file, "w") as f:
    for key, r in result.items():
        f.write(json.dumps({"key": json.loads(key), "readings": r["readings"], "entries": r["entries"], "exits": r["exits"]}) + "\n")
spark.stop()
print(json.dumps({"seconds": seconds}))
