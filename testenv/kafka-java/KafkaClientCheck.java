// KafkaClientCheck runs Apache Kafka's Java client against a broker the way
// applications use it, and prints what it saw as JSON: admin calls (create,
// describe and list topics; list groups and their offsets), a transactional
// producer that commits one transaction and aborts another, fencing of a
// zombie producer by a new one with its transactional.id, and consumers in
// groups reading committed and uncommitted records.
//
//   java -cp "$CACHE/lib/*" KafkaClientCheck.java BOOTSTRAP TOPIC

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeSet;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class KafkaClientCheck {
  public static void main(String[] args) throws Exception {
    String bootstrap = args[0], topic = args[1];
    Map<String, Object> out = new LinkedHashMap<>();
    Properties base = new Properties();
    base.put("bootstrap.servers", bootstrap);

    try (Admin admin = Admin.create(base)) {
      // The cluster's default replication factor: 1 on one broker, 3 on three.
      admin.createTopics(List.of(new NewTopic(topic, Optional.of(3), Optional.empty()))).all().get();
      out.put("partitions", admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size());
      out.put("topics", new TreeSet<>(admin.listTopics().names().get()));
    }

    Properties pp = new Properties();
    pp.putAll(base);
    pp.put("key.serializer", StringSerializer.class.getName());
    pp.put("value.serializer", StringSerializer.class.getName());
    pp.put("transactional.id", "java-check");
    pp.put("acks", "all");
    KafkaProducer<String, String> zombie = new KafkaProducer<>(pp);
    zombie.initTransactions();
    zombie.beginTransaction();
    for (int i = 0; i < 100; i++) {
      zombie.send(new ProducerRecord<>(topic, "k" + i, "committed-" + i));
    }
    zombie.commitTransaction();
    zombie.beginTransaction();
    for (int i = 0; i < 50; i++) {
      zombie.send(new ProducerRecord<>(topic, "a" + i, "aborted-" + i));
    }
    zombie.flush();
    zombie.abortTransaction();

    // A new producer with the same transactional.id fences the old one.
    KafkaProducer<String, String> fresh = new KafkaProducer<>(pp);
    fresh.initTransactions();
    String fenced = "not fenced";
    try {
      zombie.beginTransaction();
      zombie.send(new ProducerRecord<>(topic, "z", "zombie")).get();
      zombie.commitTransaction();
    } catch (Exception e) {
      for (Throwable c = e; c != null; c = c.getCause()) {
        if (c instanceof ProducerFencedException || c instanceof InvalidProducerEpochException) {
          fenced = "fenced";
        }
      }
      if (fenced.equals("not fenced")) {
        fenced = e.toString();
      }
    }
    out.put("zombie", fenced);
    zombie.close(Duration.ofSeconds(5));
    fresh.beginTransaction();
    for (int i = 0; i < 10; i++) {
      fresh.send(new ProducerRecord<>(topic, "f" + i, "committed-fresh-" + i));
    }
    fresh.commitTransaction();
    fresh.close();

    List<String> committed = consume(base, "java-committed", "read_committed", topic, 110);
    out.put("read_committed", committed.size());
    out.put("read_committed_aborted", committed.stream().filter(v -> !v.startsWith("committed")).count());
    List<String> all = consume(base, "java-uncommitted", "read_uncommitted", topic, 160);
    out.put("read_uncommitted", all.size());

    try (Admin admin = Admin.create(base)) {
      out.put("groups", admin.listConsumerGroups().all().get().stream()
          .map(ConsumerGroupListing::groupId).collect(Collectors.toCollection(TreeSet::new)));
      Map<TopicPartition, OffsetAndMetadata> offsets =
          admin.listConsumerGroupOffsets("java-committed").partitionsToOffsetAndMetadata().get();
      Map<TopicPartition, OffsetSpec> latest = new LinkedHashMap<>();
      for (TopicPartition tp : offsets.keySet()) {
        latest.put(tp, OffsetSpec.latest());
      }
      long lag = 0;
      for (var e : admin.listOffsets(latest).all().get().entrySet()) {
        lag += e.getValue().offset() - offsets.get(e.getKey()).offset();
      }
      out.put("group_partitions", offsets.size());
      out.put("group_lag", lag);
    }
    System.out.println(json(out));
  }

  static List<String> consume(Properties base, String group, String isolation, String topic, int want) {
    Properties cp = new Properties();
    cp.putAll(base);
    cp.put("group.id", group);
    cp.put("isolation.level", isolation);
    cp.put("auto.offset.reset", "earliest");
    cp.put("enable.auto.commit", "false");
    cp.put("key.deserializer", StringDeserializer.class.getName());
    cp.put("value.deserializer", StringDeserializer.class.getName());
    List<String> values = new ArrayList<>();
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
      c.subscribe(List.of(topic));
      long deadline = System.currentTimeMillis() + 60_000;
      // Past want, a short while more: anything extra would show.
      long settle = Long.MAX_VALUE;
      while (System.currentTimeMillis() < Math.min(deadline, settle)) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
          values.add(r.value());
        }
        if (values.size() >= want && settle == Long.MAX_VALUE) {
          settle = System.currentTimeMillis() + 1000;
        }
      }
      c.commitSync();
    }
    return values;
  }

  static String json(Object v) {
    if (v instanceof Map<?, ?> m) {
      return m.entrySet().stream().map(e -> json(e.getKey().toString()) + ":" + json(e.getValue()))
          .collect(Collectors.joining(",", "{", "}"));
    }
    if (v instanceof Collection<?> c) {
      return c.stream().map(KafkaClientCheck::json).collect(Collectors.joining(",", "[", "]"));
    }
    if (v instanceof String s) {
      return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") + "\"";
    }
    return String.valueOf(v);
  }
}
