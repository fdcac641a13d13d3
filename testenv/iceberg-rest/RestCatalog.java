// RestCatalog serves Apache Iceberg's REST catalog protocol on 127.0.0.1 for
// the tests: iceberg-core's own RESTCatalogServlet (the server behind the
// apache/iceberg-rest-fixture image) over a JDBC catalog on a SQLite file,
// with S3FileIO writing table metadata to the lake's S3 server.
//
// Run by Java's source launcher, so nothing is compiled:
//
//   java -cp "$CACHE/lib/*" RestCatalog.java PORT SQLITE_FILE WAREHOUSE [key=value ...]
//
// PORT 0 picks a free port. The SQLite file is removed when the server
// stops on a signal (SIGTERM, SIGINT). The line "listening on http://127.0.0.1:PORT"
// on stdout says the server is ready; extra key=value pairs are catalog
// properties (s3.endpoint, s3.access-key-id, ...).

import java.io.File;
import java.net.InetSocketAddress;
import java.util.HashMap;
import java.util.Map;

import org.apache.iceberg.CatalogUtil;
import org.apache.iceberg.catalog.Catalog;
import org.apache.iceberg.rest.RESTCatalogAdapter;
import org.apache.iceberg.rest.RESTCatalogServlet;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;

public class RestCatalog {
  public static void main(String[] args) throws Exception {
    if (args.length < 3) {
      System.err.println("usage: RestCatalog PORT SQLITE_FILE WAREHOUSE [key=value ...]");
      System.exit(2);
    }
    Map<String, String> props = new HashMap<>();
    props.put(CatalogUtil.ICEBERG_CATALOG_TYPE, "jdbc");
    props.put("uri", "jdbc:sqlite:" + args[1]);
    props.put("jdbc.schema-version", "V1");
    props.put("warehouse", args[2]);
    props.put("io-impl", "org.apache.iceberg.aws.s3.S3FileIO");
    for (int i = 3; i < args.length; i++) {
      int eq = args[i].indexOf('=');
      if (eq < 1) {
        System.err.println("catalog property " + args[i] + " is not key=value");
        System.exit(2);
      }
      props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
    }
    Catalog catalog = CatalogUtil.buildIcebergCatalog("rest_backend", props, null);
    File db = new File(args[1]);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      db.delete();
      db.getAbsoluteFile().getParentFile().delete(); // when the file was all it held
    }));

    Server server = new Server(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])));
    ServletContextHandler context = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    context.addServlet(new ServletHolder(new RESTCatalogServlet(new RESTCatalogAdapter(catalog))), "/*");
    server.setHandler(context);
    server.setStopAtShutdown(true);
    server.start();
    int port = ((ServerConnector) server.getConnectors()[0]).getLocalPort();
    System.out.println("listening on http://127.0.0.1:" + port);
    System.out.flush();
    server.join();
  }
}
