package example;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import mllp.DefaultMLLPServerEventListener;
import mllp.MLLPServer;
import mllp.MLLPServerAckOutEvent;
import mllp.MLLPServerMessageEvent;

/**
 * A receiver built only against the org.mllp:mllp jar and JNA: a raw-socket MLLP client sends it
 * one HL7 message; the program checks the message arrived and the ACK frame came back, and that
 * libmllp was loaded out of the jar. Exit status 0 on success, 1 on any failure.
 */
public final class ConsumerReceiver {
    public static void main(String[] args) throws Exception {
        int failures = 0;
        String jnaPath = System.getProperty("jna.library.path");
        String ldPath = System.getenv("LD_LIBRARY_PATH");
        System.out.println("consumer: jna.library.path=" + jnaPath + ", LD_LIBRARY_PATH=" + ldPath);
        System.out.println("consumer: binding from "
                + MLLPServer.class.getProtectionDomain().getCodeSource().getLocation());

        String hl7 = "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000||ADT^A01|MSG00001|P|2.5\r"
                + "PID|1||12345^^^HOSP^MR||DOE^JOHN\r";
        CompletableFuture<String> received = new CompletableFuture<>();

        try (MLLPServer server = new MLLPServer()) {
            server.addMLLPServerEventListener(new DefaultMLLPServerEventListener() {
                @Override
                public void message(MLLPServerMessageEvent e) {
                    received.complete(new String(e.data, StandardCharsets.ISO_8859_1));
                }

                @Override
                public void ackOut(MLLPServerAckOutEvent e) {
                    e.accept = true;
                }
            });
            server.setLocalHost("127.0.0.1");
            server.setLocalPort(0);
            server.startListening();
            System.out.println("consumer: libmllp " + MLLPServer.libraryVersion() + " from "
                    + MLLPServer.libraryPath() + ", listening on port " + server.getLocalPort());

            byte[] ack;
            try (Socket client = new Socket()) {
                client.connect(new InetSocketAddress("127.0.0.1", server.getLocalPort()), 5000);
                client.setSoTimeout(10_000);
                OutputStream out = client.getOutputStream();
                out.write(0x0B);
                out.write(hl7.getBytes(StandardCharsets.ISO_8859_1));
                out.write(new byte[] {0x1C, 0x0D});
                out.flush();
                ack = readFrame(client.getInputStream());
                failures += check("getConnectionCount() is 1", server.getConnectionCount() == 1);
            }
            String got = received.get(10, TimeUnit.SECONDS);
            failures += check("message delivered", got.equals(hl7));
            failures += check("ACK frame 0B 06 1C 0D", Arrays.equals(ack, new byte[] {0x0B, 0x06, 0x1C, 0x0D}));
        }
        failures += check("no jna.library.path", jnaPath == null || jnaPath.isEmpty());
        String lib = MLLPServer.libraryPath();
        failures += check("libmllp taken from the jar", lib.startsWith("jar:") && lib.endsWith("!/linux-x86-64/libmllp.so"));
        System.out.println("consumer: " + (failures == 0 ? 1 : 0) + " passed, " + (failures == 0 ? 0 : 1) + " failed");
        System.exit(failures == 0 ? 0 : 1);
    }

    private static int check(String what, boolean ok) {
        System.out.println((ok ? "ok   " : "FAIL ") + what);
        return ok ? 0 : 1;
    }

    /** One MLLP frame, SB ... EB CR, framing included. */
    private static byte[] readFrame(InputStream in) throws Exception {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        int prev = -1;
        while (true) {
            int c = in.read();
            if (c < 0) {
                throw new IllegalStateException("EOF after " + b.size() + " bytes");
            }
            b.write(c);
            if (prev == 0x1C && c == 0x0D) {
                return b.toByteArray();
            }
            prev = c;
        }
    }
}
