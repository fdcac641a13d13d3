// TurnstileWindows is the seed's MTA aggregation as a Kafka Streams
// application, written the way the DSL's documentation writes one, for the
// benchmark that runs it next to Sluice and Spark Structured Streaming:
// turnstile audits as CSV lines on a topic keyed by turnstile, deduplicated
// on the reading's identity (a state store of the keys seen, per
// turnstile's partition), grouped per turnstile (a repartition topic), and
// counted and summed in 4-hour tumbling windows of event time with
// GRACE_HOURS of grace. Every update of a window goes to OUT_TOPIC as JSON, keyed
// by window and group, exactly once (exactly_once_v2), as Sluice's
// aggregator writes its results.
//
// It stops once RECORDS input records are counted, dropped as duplicates
// or dropped as late (Kafka Streams' dropped-records metric), after
// closing (which commits the last updates), and prints {"seconds": ...,
// "late": ...}: the time from start() to then, and the late records.
//
//   java -cp "$CACHE/lib/*" TurnstileWindows.java BOOTSTRAP TOPIC OUT_TOPIC RECORDS STATE_DIR APP_ID GRACE_HOURS

import java.nio.ByteBuffer;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

public class TurnstileWindows {
  // The MTA file's columns: C/A,UNIT,SCP,STATION,LINENAME,DIVISION,DATE,TIME,DESC,ENTRIES,EXITS.
  // It quotes no field, so a split on commas reads it.
  static String[] fields(String line) {
    return line.split(",", -1);
  }

  static final DateTimeFormatter READING_TIME = DateTimeFormatter.ofPattern("MM/dd/yyyy HH:mm:ss");

  /** A reading's time, from its DATE and TIME, in UTC; -1 (dropped) for a line that has none. */
  static class ReadingTime implements TimestampExtractor {
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      String[] f = fields((String) record.value());
      try {
        return LocalDateTime.parse(f[6] + " " + f[7], READING_TIME).toInstant(ZoneOffset.UTC).toEpochMilli();
      } catch (RuntimeException e) {
        return -1;
      }
    }
  }

  static final AtomicLong counted = new AtomicLong(), duplicates = new AtomicLong();

  /** Passes a reading on the first time its identity is seen. */
  static class Dedupe implements FixedKeyProcessor<String, String, String> {
    private FixedKeyProcessorContext<String, String> context;
    private KeyValueStore<String, Long> seen;

    public void init(FixedKeyProcessorContext<String, String> context) {
      this.context = context;
      this.seen = context.getStateStore("seen");
    }

    public void process(FixedKeyRecord<String, String> record) {
      String[] f = fields(record.value());
      String id = String.join(",", f[0], f[1], f[2], f[3], f[6], f[7]);
      if (seen.get(id) != null) {
        duplicates.incrementAndGet();
        return;
      }
      seen.put(id, record.timestamp());
      context.forward(record);
    }
  }

  /** A window's readings, ENTRIES and EXITS: three longs. */
  static final Serde<long[]> SUMS = Serdes.serdeFrom(
      (Serializer<long[]>) (topic, v) -> ByteBuffer.allocate(24).putLong(v[0]).putLong(v[1]).putLong(v[2]).array(),
      (Deserializer<long[]>) (topic, b) -> {
        ByteBuffer buf = ByteBuffer.wrap(b);
        return new long[] {buf.getLong(), buf.getLong(), buf.getLong()};
      });

  static String quote(String s) {
    return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
  }

  /** The records the tasks dropped: here, those too late for their window. */
  static long late(KafkaStreams streams) {
    double n = 0;
    for (var m : streams.metrics().entrySet()) {
      if (m.getKey().name().equals("dropped-records-total") && m.getKey().group().equals("stream-task-metrics")) {
        n += ((Number) m.getValue().metricValue()).doubleValue();
      }
    }
    return (long) n;
  }

  public static void main(String[] args) throws Exception {
    String bootstrap = args[0], topic = args[1], outTopic = args[2];
    long records = Long.parseLong(args[3]);
    String stateDir = args[4], appId = args[5];
    Duration grace = Duration.ofHours(Long.parseLong(args[6]));

    StreamsBuilder builder = new StreamsBuilder();
    builder.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore("seen"), Serdes.String(), Serdes.Long()));
    builder.stream(topic, Consumed.with(Serdes.String(), Serdes.String()).withTimestampExtractor(new ReadingTime()))
        .processValues(Dedupe::new, "seen")
        // The group: C/A, UNIT, SCP, STATION, LINENAME, DIVISION, DATE, DESC, as a JSON array's items.
        .groupBy((key, line) -> {
              String[] f = fields(line);
              StringBuilder g = new StringBuilder();
              for (int i : new int[] {0, 1, 2, 3, 4, 5, 6, 8}) {
                g.append(',').append(quote(f[i]));
              }
              return g.toString();
            }, Grouped.with("by-turnstile", Serdes.String(), Serdes.String()))
        .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofHours(4), grace))
        .aggregate(() -> new long[3], (group, line, sums) -> {
              String[] f = fields(line);
              counted.incrementAndGet();
              return new long[] {sums[0] + 1, sums[1] + Long.parseLong(f[9].trim()), sums[2] + Long.parseLong(f[10].trim())};
            }, Materialized.with(Serdes.String(), SUMS))
        .toStream((window, sums) -> {
              String start = LocalDateTime.ofEpochSecond(window.window().start() / 1000, 0, ZoneOffset.UTC).toString();
              return "[" + quote(start.length() == 16 ? start + ":00" : start) + window.key() + "]";
            })
        .mapValues((key, sums) -> "{\"key\":" + key + ",\"readings\":" + sums[0] + ",\"entries\":" + sums[1] + ",\"exits\":" + sums[2] + "}")
        .to(outTopic, Produced.with(Serdes.String(), Serdes.String()));

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2); // the machine's cores, as Spark's local[2]
    props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch failed = new CountDownLatch(1);
    streams.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      failed.countDown();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    long start = System.nanoTime();
    streams.start();
    while (counted.get() + duplicates.get() + late(streams) < records) {
      if (failed.await(20, TimeUnit.MILLISECONDS)) {
        streams.close();
        System.exit(1);
      }
    }
    long late = late(streams); // closing removes the metrics
    streams.close();
    double seconds = (System.nanoTime() - start) / 1e9;
    System.out.println("{\"seconds\": " + seconds + ", \"counted\": " + counted.get() + ", \"duplicates\": " + duplicates.get()
        + ", \"late\": " + late + "}");
  }
}
