package mllp;

import static mllp.TestSupport.*;

import java.nio.charset.StandardCharsets;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Run in a child JVM by the exit tests: leaves the JVM with a server listening and a client
 * connected, in several ways. Prints CHILD-DONE just before leaving.
 */
public final class ExitChild {
    public static void main(String[] args) throws Exception {
        String mode = args[0];
        CountDownLatch disconnected = new CountDownLatch(1);
        MLLPServer s = listening(new DefaultMLLPServerEventListener() {
            @Override
            public void endTransfer(MLLPServerEndTransferEvent e) {
                if (mode.equals("exit-in-event")) {
                    System.out.println("CHILD-DONE");
                    System.out.flush();
                    System.exit(4);
                }
            }

            @Override
            public void disconnected(MLLPServerDisconnectedEvent e) {
                System.out.println("disconnected " + e.connectionId);
                disconnected.countDown();
            }
        });
        Client c = new Client(s.getLocalPort());
        if (mode.equals("gc")) {
            for (int i = 0; i < 20; i++) {
                MLLPServer extra = listening(new DefaultMLLPServerEventListener());
                new Client(extra.getLocalPort()).sendFrame("MSH|x".getBytes(StandardCharsets.US_ASCII));
                extra = null;
                System.gc();
            }
            for (int i = 0; i < 200; i++) {
                c.sendFrame(sample("adt_a01.hl7"));
                c.readFrameRaw();
                if (i % 10 == 0) {
                    System.gc();
                }
            }
        } else {
            c.sendFrame(sample("adt_a01.hl7"));
            if (!mode.equals("exit-in-event")) {
                c.readFrameRaw();
            } else {
                Thread.sleep(20000); // System.exit happens on the reactor thread
            }
        }
        System.out.println("CHILD-DONE");
        System.out.flush();
        if (mode.equals("exit")) {
            System.exit(3);
        }
        // "return" and "gc": main returns with servers listening and clients connected
    }
}
