import java.nio.charset.StandardCharsets;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;

import mllp.DefaultMLLPServerEventListener;
import mllp.MLLPServer;
import mllp.MLLPServerAckOutEvent;
import mllp.MLLPServerConnectedEvent;
import mllp.MLLPServerDisconnectedEvent;
import mllp.MLLPServerEndTransferEvent;
import mllp.MLLPServerErrorEvent;
import mllp.MLLPServerStartTransferEvent;
import mllp.MLLPServerTransferEvent;

/**
 * An MLLP receiver: prints each HL7 message it receives and acknowledges it.
 *
 *   java -cp mllp-0.1.0.jar:jna-5.19.1.jar:. Receiver [port]
 *
 * (the jar carries libmllp; see ../README.md for the Maven dependency)
 *
 * Stops on Ctrl-C (the JVM's shutdown hook closes the server).
 */
public class Receiver {
    public static void main(String[] args) throws Exception {
        int port = args.length > 0 ? Integer.parseInt(args[0]) : 2575;
        MLLPServer server = new MLLPServer();
        ConcurrentHashMap<String, StringBuilder> inFlight = new ConcurrentHashMap<>();

        server.addMLLPServerEventListener(new DefaultMLLPServerEventListener() {
            @Override
            public void connected(MLLPServerConnectedEvent e) {
                System.out.println("[" + e.connectionId + "] connected");
            }

            @Override
            public void startTransfer(MLLPServerStartTransferEvent e) {
                inFlight.put(e.connectionId, new StringBuilder());
            }

            @Override
            public void transfer(MLLPServerTransferEvent e) {
                // HL7 v2 may use any character set; ISO-8859-1 keeps every byte visible.
                inFlight.get(e.connectionId).append(new String(e.data, StandardCharsets.ISO_8859_1));
            }

            @Override
            public void endTransfer(MLLPServerEndTransferEvent e) {
                String msg = inFlight.remove(e.connectionId).toString();
                System.out.println("[" + e.connectionId + "] message " + e.messageSeq + ":");
                System.out.println(msg.replace('\r', '\n'));
            }

            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                e.accept = true; // the default: acknowledge every message
                System.out.println("[" + e.connectionId + "] acknowledged");
            }

            @Override
            public void error(MLLPServerErrorEvent e) {
                System.err.println("[" + e.connectionId + "] error " + e.errorCode + ": " + e.description);
            }

            @Override
            public void disconnected(MLLPServerDisconnectedEvent e) {
                System.out.println("[" + e.connectionId + "] disconnected");
            }
        });

        server.setLocalPort(port);
        server.startListening();
        System.out.println("listening on port " + server.getLocalPort() + " (Ctrl-C to stop)");
        new CountDownLatch(1).await(); // events arrive on the server's own thread
    }
}
