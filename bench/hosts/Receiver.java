import java.io.InputStream;
import java.util.concurrent.CountDownLatch;

import mllp.DefaultMLLPServerEventListener;
import mllp.MLLPServer;
import mllp.MLLPServerAckOutEvent;
import mllp.MLLPServerTransferEvent;

/**
 * Benchmark receiver host on the Java binding (bindings/java): the same per-message work as
 * {@code mllp-listen --quiet} — take the message bytes (ackOut's {@code message}) and accept.
 *
 *   java -cp mllp.jar:/usr/share/java/jna.jar:. -Djna.library.path=target/release Receiver [--transfer]
 *
 * --transfer: take the bytes from the transfer events instead (ackOut only accepts).
 * Listens on 127.0.0.1, any free port; first stdout line "listening on 127.0.0.1:PORT"; nothing
 * per message; exits on SIGTERM/SIGINT (shutdown hook) or when stdin reaches EOF.
 */
public class Receiver {
    // Only touched on the reactor thread.
    static long messages, bytes;

    public static void main(String[] args) throws Exception {
        boolean viaTransfer = args.length > 0 && args[0].equals("--transfer");
        MLLPServer server = new MLLPServer();
        server.addMLLPServerEventListener(viaTransfer
            ? new DefaultMLLPServerEventListener() {
                @Override public void transfer(MLLPServerTransferEvent e) { bytes += e.data.length; }
                @Override public void ackOut(MLLPServerAckOutEvent e) { messages++; e.accept = true; }
            }
            : new DefaultMLLPServerEventListener() {
                @Override public void ackOut(MLLPServerAckOutEvent e) {
                    byte[] m = e.message;   // the complete message
                    bytes += m.length;
                    messages++;
                    e.accept = true;
                }
            });
        server.setLocalHost("127.0.0.1");
        server.setLocalPort(0);
        server.startListening();
        System.out.println("listening on 127.0.0.1:" + server.getLocalPort());
        System.out.flush();

        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {   // SIGTERM / SIGINT
            done.countDown();
            stop(server);
        }));
        Thread stdin = new Thread(() -> {
            try (InputStream in = System.in) {
                byte[] b = new byte[256];
                while (in.read(b) >= 0) { }
            } catch (Exception ignored) { }
            done.countDown();
        }, "stdin");
        stdin.setDaemon(true);
        stdin.start();
        done.await();
        stop(server);
        System.exit(0);
    }

    private static synchronized void stop(MLLPServer server) {
        try {
            server.close();
        } catch (Exception ignored) { }
        System.err.println("java receiver: " + messages + " messages, " + bytes + " bytes");
    }
}
