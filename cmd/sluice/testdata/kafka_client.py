"""Talks to Sluice's embedded broker with confluent-kafka (librdkafka), as
the seed's Kafka producer and consumers did: an idempotent producer with
acks=all, a consumer group that commits its offsets, and read-committed
consumers of Sluice's own topics.

Usage: python kafka_client.py BOOTSTRAP TOPIC N EXPECT_ENRICHED

Prints, as JSON, what each step saw.
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, n, expect_enriched = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = {}

admin = AdminClient({"bootstrap.servers": bootstrap})
futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=-1)])  # the cluster default
futures[topic].result(timeout=30)

delivered, failed = [], []
producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                     "compression.type": "lz4", "linger.ms": 5})
for i in range(n):
    producer.produce(topic, key=f"k{i}", value=json.dumps({"i": i}),
                     on_delivery=lambda err, msg: (failed if err else delivered).append(msg))
producer.flush(30)
out["delivered"], out["delivery_errors"] = len(delivered), len(failed)


def consume(group, topics, want, isolation="read_committed", deadline_s=60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "isolation.level": isolation, "enable.auto.commit": False})
    c.subscribe(topics)
    msgs, deadline = [], time.time() + deadline_s
    while len(msgs) < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                out.setdefault("consume_errors", []).append(str(m.error()))
            continue
        msgs.append(m)
    if msgs:
        c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(t, p) for t in topics for p in range(3)], timeout=10)
    c.close()
    return msgs, sum(max(tp.offset, 0) for tp in committed)


msgs, committed = consume("py-group", [topic], n)
out["consumed"] = len(msgs)
out["consumed_in_order"] = all(
    json.loads(a.value())["i"] < json.loads(b.value())["i"]
    for a, b in zip(msgs, msgs[1:]) if a.partition() == b.partition())
out["keys"] = len({m.key().decode() for m in msgs})
out["committed"] = committed
# The group resumes where it committed: nothing is read twice.
again, _ = consume("py-group", [topic], 1, deadline_s=5)
out["consumed_again"] = len(again)

raw, _ = consume("py-raw", ["sluice.raw"], expect_enriched)
out["raw"] = len(raw)
out["raw_root_ids"] = sum(1 for m in raw if json.loads(m.value()).get("root_id"))
enriched, _ = consume("py-enriched", ["sluice.enriched"], expect_enriched)
out["enriched"] = len(enriched)
# Listed last: Kafka's metadata shows a new topic a moment after it is made.
out["topics"] = sorted(t for t in admin.list_topics(timeout=10).topics if not t.startswith("__"))
json.dump(out, sys.stdout)
