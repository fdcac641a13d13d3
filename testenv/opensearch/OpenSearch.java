// OpenSearch starts one OpenSearch node in this JVM from the server jar
// and the netty4 HTTP module (testenv/fetch opensearch caches them), on
// loopback, for the search sink's tests:
//
//	java -cp "$HOME/.cache/sluice/opensearch/lib/*" OpenSearch.java DIR HTTP_PORT [KEY=VALUE ...]
//
// DIR holds the node's data and logs. KEY=VALUE pairs are node settings
// (thread_pool.write.queue_size=2, say, to make the server reject bulk
// items under load). It prints "ready http://127.0.0.1:PORT" once the
// node serves HTTP, and stops cleanly on SIGTERM or when its standard
// input closes, so a test that dies does not leave it running; with
// SLUICE_OPENSEARCH_FOREGROUND set (testenv/opensearch/run), only on a
// signal.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.List;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

public class OpenSearch {
    // PluginNode exists because the Node constructor that takes plugins
    // from the class path, rather than from a plugins directory, is
    // protected.
    static class PluginNode extends Node {
        PluginNode(Settings settings, List<Class<? extends Plugin>> plugins) {
            super(InternalSettingsPreparer.prepareEnvironment(settings, Collections.emptyMap(), null, () -> "sluice-test"), plugins, true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: OpenSearch.java DIR HTTP_PORT [KEY=VALUE ...]");
            System.exit(2);
        }
        Path dir = Path.of(args[0]).toAbsolutePath();
        Files.createDirectories(dir.resolve("data"));
        Files.createDirectories(dir.resolve("logs"));
        Settings.Builder b = Settings.builder()
            .put("path.home", dir.toString())
            .put("path.data", dir.resolve("data").toString())
            .put("path.logs", dir.resolve("logs").toString())
            .put("cluster.name", "sluice-test")
            .put("node.name", "sluice-test")
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", args[1])
            .put("transport.port", "0")
            .put("http.type", "netty4")
            .put("transport.type", "netty4")
            // A test machine's disk may be fuller than the default
            // watermarks allow, which would make indices read-only.
            .put("cluster.routing.allocation.disk.threshold_enabled", "false")
            .put("action.auto_create_index", "true");
        for (int i = 2; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq < 1) {
                System.err.println("setting " + args[i] + " is not KEY=VALUE");
                System.exit(2);
            }
            b.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        Settings settings = b.build();
        LogConfigurator.configureWithoutConfig(settings);
        Node node = new PluginNode(settings, List.of(Netty4Plugin.class));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        node.start();
        System.out.println("ready http://127.0.0.1:" + args[1]);
        System.out.flush();
        if (System.getenv("SLUICE_OPENSEARCH_FOREGROUND") != null) {
            // testenv/opensearch/run: until a signal, which the shutdown
            // hook turns into a clean stop.
            Thread.currentThread().join();
        }
        // A test holds standard input open while it needs the node.
        while (System.in.read() != -1) {
        }
        System.exit(0);
    }
}
