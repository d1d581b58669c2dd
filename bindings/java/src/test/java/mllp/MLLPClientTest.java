package mllp;

import static mllp.TestSupport.*;
import static org.junit.jupiter.api.Assertions.*;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The client (sender) against an {@link MLLPServer} of this binding and against a raw
 * {@link ServerSocket} that misbehaves on purpose, all on 127.0.0.1. Every wait is bounded by
 * the library's Timeout or a deadline loop; no assertion depends on how long something took.
 */
public class MLLPClientTest {
    private final List<AutoCloseable> open = new ArrayList<>();

    private <T extends AutoCloseable> T track(T c) {
        open.add(c);
        return c;
    }

    @AfterEach
    public void closeAll() throws Exception {
        Collections.reverse(open);
        for (AutoCloseable c : open) {
            c.close();
        }
    }

    // ------------------------------------------------------------------ helpers

    /** A small HL7 message with this MSH-10. */
    static byte[] msg(String controlId) {
        return ("MSH|^~\\&|SND|FAC|RCV|FAC|20240101120000||ADT^A01|" + controlId + "|P|2.5\rPID|1||42\r")
                .getBytes(StandardCharsets.UTF_8);
    }

    /** An HL7 ACK with MSA-1 code and MSA-2 controlId. */
    static byte[] hl7Ack(String code, String controlId) {
        return ("MSH|^~\\&|RCV|FAC|SND|FAC|20240101120001||ACK^A01|A" + controlId + "|P|2.5\rMSA|" + code + "|"
                + controlId + "\r").getBytes(StandardCharsets.UTF_8);
    }

    static String controlIdOf(byte[] message) {
        String first = new String(message, StandardCharsets.ISO_8859_1).split("\r")[0];
        return first.split("\\|", -1)[9];
    }

    /** Records the client's events in arrival order. */
    static final class Events implements MLLPClientEventListener {
        final List<Object> all = new CopyOnWriteArrayList<>();
        final List<MLLPClientSendDoneEvent> done = new CopyOnWriteArrayList<>();
        final List<MLLPClientAckInEvent> acks = new CopyOnWriteArrayList<>();
        final List<MLLPClientErrorEvent> errors = new CopyOnWriteArrayList<>();
        final List<Thread> threads = new CopyOnWriteArrayList<>();

        private void add(Object e) {
            threads.add(Thread.currentThread());
            all.add(e);
        }

        @Override
        public void connected(MLLPClientConnectedEvent e) {
            add(e);
        }

        @Override
        public void disconnected(MLLPClientDisconnectedEvent e) {
            add(e);
        }

        @Override
        public void ackIn(MLLPClientAckInEvent e) {
            add(e);
            acks.add(e);
        }

        @Override
        public void sendDone(MLLPClientSendDoneEvent e) {
            add(e);
            done.add(e);
        }

        @Override
        public void error(MLLPClientErrorEvent e) {
            add(e);
            errors.add(e);
        }

        <T> List<T> of(Class<T> type) {
            List<T> r = new ArrayList<>();
            for (Object o : all) {
                if (type.isInstance(o)) {
                    r.add(type.cast(o));
                }
            }
            return r;
        }
    }

    private MLLPClient client(int port, MLLPClientEventListener... ls) throws MLLPException {
        MLLPClient c = track(new MLLPClient("127.0.0.1", port));
        for (MLLPClientEventListener l : ls) {
            c.addMLLPClientEventListener(l);
        }
        c.setTimeout(5);
        return c;
    }

    private MLLPServer server(MLLPServerEventListener... ls) throws MLLPException {
        return track(listening(ls));
    }

    /**
     * A raw MLLP peer on 127.0.0.1: each accepted connection is handed to the handler on a
     * daemon thread of its own (the socket has a read timeout, so nothing waits for ever).
     */
    static final class RawServer implements AutoCloseable {
        interface Handler {
            void handle(Socket s, InputStream in, OutputStream out) throws Exception;
        }

        final ServerSocket ss;
        final Thread acceptor;
        final List<Socket> sockets = new CopyOnWriteArrayList<>();
        final AtomicInteger connections = new AtomicInteger();
        final List<Throwable> failures = new CopyOnWriteArrayList<>();

        RawServer(Handler h) throws IOException {
            ss = new ServerSocket(0, 50, InetAddress.getByName("127.0.0.1"));
            acceptor = new Thread(() -> {
                while (!ss.isClosed()) {
                    Socket s;
                    try {
                        s = ss.accept();
                    } catch (IOException e) {
                        return;
                    }
                    sockets.add(s);
                    connections.incrementAndGet();
                    Thread t = new Thread(() -> {
                        try (Socket so = s) {
                            so.setSoTimeout(10000);
                            h.handle(so, so.getInputStream(), so.getOutputStream());
                        } catch (Throwable e) {
                            if (!(e instanceof IOException)) {
                                failures.add(e);
                            }
                        }
                    }, "raw-mllp-conn");
                    t.setDaemon(true);
                    t.start();
                }
            }, "raw-mllp-accept");
            acceptor.setDaemon(true);
            acceptor.start();
        }

        int port() {
            return ss.getLocalPort();
        }

        @Override
        public void close() throws IOException {
            ss.close();
            for (Socket s : sockets) {
                s.close();
            }
            try {
                acceptor.join(5000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            if (!failures.isEmpty()) {
                throw new AssertionError("raw server failed", failures.get(0));
            }
        }
    }

    /** The payload of the next frame from in; null at EOF. */
    static byte[] readFrame(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        int prev = -1;
        boolean started = false;
        while (true) {
            int c = in.read();
            if (c < 0) {
                return null;
            }
            if (!started) {
                started = c == SB;
                continue;
            }
            if (prev == (EB & 0xFF) && c == CR) {
                byte[] all = b.toByteArray();
                return java.util.Arrays.copyOf(all, all.length - 1);
            }
            b.write(c);
            prev = c;
        }
    }

    static void writeFrame(OutputStream out, byte[] payload) throws IOException {
        out.write(frame(payload));
        out.flush();
    }

    // ------------------------------------------------------------------ properties

    @Test
    @Timeout(20)
    public void propertiesAndDefaults() throws Exception {
        try (MLLPClient c = new MLLPClient()) {
            assertEquals("127.0.0.1", c.getRemoteHost());
            assertEquals(0, c.getRemotePort());
            assertEquals("", c.getLocalHost());
            assertEquals(2, c.getVersion());
            assertEquals(10, c.getTimeout());
            assertFalse(c.isKeepAlive());
            assertFalse(c.isConnected());
            assertFalse(c.isSSLEnabled());
            assertEquals(0, c.getPending());
            c.setRemoteHost("localhost");
            c.setRemotePort(2575);
            c.setLocalHost("127.0.0.1");
            c.setVersion(MLLPClient.mvVersion1);
            c.setTimeout(3);
            c.setKeepAlive(true);
            c.setSSLEnabled(true);
            assertEquals("localhost", c.getRemoteHost());
            assertEquals(2575, c.getRemotePort());
            assertEquals("127.0.0.1", c.getLocalHost());
            assertEquals(1, c.getVersion());
            assertEquals(3, c.getTimeout());
            assertTrue(c.isKeepAlive());
            assertTrue(c.isSSLEnabled());
            c.setSSLCert(null);

            assertEquals("3", c.config("MaxRetries"));
            assertEquals("", c.config("MaxRetries=5"));
            assertEquals("5", c.config("MaxRetries"));
            c.config("RetryDelay=10");
            assertEquals("10", c.config("RetryDelay"));
            c.config("AckMode=HL7");
            assertTrue(c.config("AckMode").equalsIgnoreCase("HL7"));
            assertEquals(MLLPException.UNKNOWN_SETTING,
                    assertThrows(MLLPException.class, () -> c.config("NoSuchSetting=1")).getCode());
            assertEquals(MLLPException.INVALID_VALUE,
                    assertThrows(MLLPException.class, () -> c.setRemotePort(70000)).getCode());
            MLLPException empty = assertThrows(MLLPException.class, () -> c.sendAsync(new byte[0]));
            assertEquals(MLLPException.INVALID_ARGUMENT, empty.getCode());
            assertFalse(empty.getMessage().isEmpty());
        }
    }

    @Test
    @Timeout(20)
    public void closedClientThrows() throws Exception {
        MLLPClient c = new MLLPClient();
        c.close();
        c.close();   // idempotent
        assertTrue(c.isClosed());
        assertEquals(MLLPException.BAD_STATE, assertThrows(MLLPException.class, c::connect).getCode());
        assertEquals(MLLPException.BAD_STATE, assertThrows(MLLPException.class, () -> c.send("x")).getCode());
        assertThrows(IllegalStateException.class, c::getRemotePort);
    }

    // ------------------------------------------------------------------ against MLLPServer

    @Test
    @Timeout(30)
    public void syncSendGetsAck() throws Exception {
        byte[] sample = sample("adt_a01.hl7");
        List<byte[]> received = new CopyOnWriteArrayList<>();
        MLLPServer s = server(new DefaultMLLPServerEventListener() {
            @Override
            public void message(MLLPServerMessageEvent e) {
                received.add(e.data);
            }
        });
        Events ev = new Events();
        MLLPClient c = client(s.getLocalPort(), ev);
        assertFalse(c.isConnected());
        SendResult r = c.send(sample);   // connects on demand
        assertEquals(AckKind.ACK, r.getAckKind());
        assertEquals(1, r.getAttempts());
        assertTrue(r.getMessageId() != 0);
        assertTrue(c.isConnected());
        assertEquals(0, c.getPending());
        waitUntil("the server got the message", 5000, () -> received.size() == 1);
        assertArrayEquals(sample, received.get(0));

        List<MLLPClientConnectedEvent> conn = ev.of(MLLPClientConnectedEvent.class);
        assertEquals(1, conn.size());
        assertEquals(0, conn.get(0).statusCode);
        assertEquals(1, conn.get(0).connectionId);
        assertEquals(1, ev.acks.size());
        MLLPClientAckInEvent a = ev.acks.get(0);
        assertEquals(AckKind.ACK, a.kind);
        assertTrue(a.matched);
        assertEquals(r.getMessageId(), a.messageId);
        assertArrayEquals(new byte[] {ACK}, a.data);
        assertEquals("", a.controlId);
        assertEquals(1, ev.done.size());
        MLLPClientSendDoneEvent d = ev.done.get(0);
        assertTrue(d.isSuccess());
        assertEquals(r.getMessageId(), d.messageId);
        assertEquals(controlIdOf(sample), d.controlId);
        assertEquals(AckKind.ACK, d.ackKind);
        assertEquals(1, d.attempts);
        // every event on the calling thread, inside send()
        for (Thread t : ev.threads) {
            assertSame(Thread.currentThread(), t);
        }

        // a second message on the same connection; then String send and disconnect
        SendResult r2 = c.send(new String(msg("SECOND"), StandardCharsets.UTF_8));
        assertEquals(AckKind.ACK, r2.getAckKind());
        assertTrue(Long.compareUnsigned(r2.getMessageId(), r.getMessageId()) > 0);
        assertEquals(1, ev.of(MLLPClientConnectedEvent.class).size());
        c.disconnect();
        assertFalse(c.isConnected());
        assertEquals(1, ev.of(MLLPClientDisconnectedEvent.class).size());
        // reconnect: connection number 2
        c.connect();
        assertTrue(c.isConnected());
        assertEquals(2, ev.of(MLLPClientConnectedEvent.class).get(1).connectionId);
        c.close();
        assertEquals(2, ev.of(MLLPClientDisconnectedEvent.class).size());
    }

    @Test
    @Timeout(30)
    public void hl7ModeGetsAaWithMatchingControlId() throws Exception {
        MLLPServer s = server();
        s.config("AckMode=HL7");
        Events ev = new Events();
        MLLPClient c = client(s.getLocalPort(), ev);
        c.config("AckMode=HL7");
        byte[] m = msg("CTRL-4711");
        SendResult r = c.send(m);
        assertEquals(AckKind.AA, r.getAckKind());
        assertEquals(1, r.getAttempts());
        assertEquals(1, ev.acks.size());
        MLLPClientAckInEvent a = ev.acks.get(0);
        assertEquals(AckKind.AA, a.kind);
        assertEquals("CTRL-4711", a.controlId);
        assertTrue(a.matched);
        assertEquals(r.getMessageId(), a.messageId);
        String ack = new String(a.data, StandardCharsets.UTF_8);
        assertTrue(ack.startsWith("MSH|"), ack);
        assertTrue(ack.contains("MSA|AA|CTRL-4711"), ack);
        assertEquals("CTRL-4711", ev.done.get(0).controlId);
    }

    @Test
    @Timeout(30)
    public void nakFirstThenAckIsRetried() throws Exception {
        AtomicInteger seen = new AtomicInteger();
        MLLPServer s = server(new DefaultMLLPServerEventListener() {
            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                if (seen.incrementAndGet() == 1) {
                    e.accept = false;   // NAK the first attempt
                }
            }
        });
        Events ev = new Events();
        MLLPClient c = client(s.getLocalPort(), ev);
        c.config("RetryDelay=10");
        SendResult r = c.send(msg("RETRY1"));
        assertEquals(AckKind.ACK, r.getAckKind());
        assertEquals(2, r.getAttempts());
        assertEquals(2, seen.get());
        assertEquals(2, ev.acks.size());
        assertEquals(AckKind.NAK, ev.acks.get(0).kind);
        assertEquals(AckKind.ACK, ev.acks.get(1).kind);
        assertEquals(1, ev.done.size());
        assertEquals(0, ev.done.get(0).resultCode);
        assertEquals(2, ev.done.get(0).attempts);
    }

    @Test
    @Timeout(30)
    public void nakAfterRetriesFailsWith670() throws Exception {
        MLLPServer s = server(new DefaultMLLPServerEventListener() {
            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                e.accept = false;
            }
        });
        Events ev = new Events();
        MLLPClient c = client(s.getLocalPort(), ev);
        c.config("RetryDelay=10");
        c.config("MaxRetries=1");
        MLLPException ex = assertThrows(MLLPException.class, () -> c.send(msg("NAKNAK")));
        assertEquals(MLLPException.NAK_RECEIVED, ex.getCode());
        assertEquals(1, ev.done.size());
        assertEquals(MLLPException.NAK_RECEIVED, ev.done.get(0).resultCode);
        assertEquals(AckKind.NAK, ev.done.get(0).ackKind);
        assertEquals(2, ev.done.get(0).attempts);
    }

    @Test
    @Timeout(30)
    public void asyncBatchWithDoEvents() throws Exception {
        List<String> got = new CopyOnWriteArrayList<>();
        MLLPServer s = server(new DefaultMLLPServerEventListener() {
            @Override
            public void message(MLLPServerMessageEvent e) {
                got.add(controlIdOf(e.data));
            }
        });
        Events ev = new Events();
        MLLPClient c = client(s.getLocalPort(), ev);
        List<Long> ids = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            ids.add(c.sendAsync(msg("ASYNC" + i)));
        }
        assertEquals(20, c.getPending());
        assertTrue(ev.done.isEmpty(), "nothing happens before doEvents");
        long deadline = System.currentTimeMillis() + 20000;
        int pending = c.doEvents(100);
        while (pending > 0 && System.currentTimeMillis() < deadline) {
            pending = c.doEvents(100);
        }
        assertEquals(0, pending);
        assertEquals(0, c.getPending());
        assertEquals(20, ev.done.size());
        for (int i = 0; i < 20; i++) {
            MLLPClientSendDoneEvent d = ev.done.get(i);
            assertEquals((long) ids.get(i), d.messageId, "SendDone " + i + " in queue order");
            assertEquals("ASYNC" + i, d.controlId);
            assertEquals(0, d.resultCode, d.description);
            assertEquals(AckKind.ACK, d.ackKind);
        }
        for (Thread t : ev.threads) {
            assertSame(Thread.currentThread(), t);
        }
        waitUntil("the server got all 20", 5000, () -> got.size() == 20);
        for (int i = 0; i < 20; i++) {
            assertEquals("ASYNC" + i, got.get(i));
        }
    }

    @Test
    @Timeout(30)
    public void listenerReentrancy() throws Exception {
        MLLPServer s = server();
        AtomicInteger sendCode = new AtomicInteger();
        AtomicInteger doEventsCode = new AtomicInteger();
        AtomicReference<Throwable> closeFailure = new AtomicReference<>();
        AtomicBoolean queued = new AtomicBoolean();
        List<Long> doneIds = new CopyOnWriteArrayList<>();
        MLLPClient[] self = new MLLPClient[1];
        MLLPClient c = client(s.getLocalPort(), new MLLPClientEventListener() {
            @Override
            public void sendDone(MLLPClientSendDoneEvent e) {
                doneIds.add(e.messageId);
                if (queued.getAndSet(true)) {
                    return;
                }
                try {
                    self[0].send("x");
                } catch (MLLPException ex) {
                    sendCode.set(ex.getCode());
                }
                try {
                    self[0].doEvents(0);
                } catch (MLLPException ex) {
                    doEventsCode.set(ex.getCode());
                }
                try {
                    self[0].close();
                } catch (Throwable t) {
                    closeFailure.set(t);
                }
                try {
                    self[0].getRemotePort();          // properties are allowed
                    self[0].sendAsync(msg("FROM-EVENT"));
                } catch (MLLPException ex) {
                    sendCode.set(-ex.getCode());
                }
            }
        });
        self[0] = c;
        c.send(msg("FIRST"));
        assertEquals(MLLPException.REENTRANT, sendCode.get());
        assertEquals(MLLPException.REENTRANT, doEventsCode.get());
        assertTrue(closeFailure.get() instanceof IllegalStateException, String.valueOf(closeFailure.get()));
        assertEquals(MLLPException.REENTRANT, ((MLLPException) closeFailure.get().getCause()).getCode());
        assertFalse(c.isClosed());
        assertEquals(1, c.getPending());   // the message queued from the event
        long deadline = System.currentTimeMillis() + 10000;
        while (c.doEvents(100) > 0 && System.currentTimeMillis() < deadline) {
            // drive it
        }
        assertEquals(2, doneIds.size());
    }

    // ------------------------------------------------------------------ against a raw socket

    @Test
    @Timeout(30)
    public void ackNeverComesFailsWith2040() throws Exception {
        RawServer raw = track(new RawServer((so, in, out) -> {
            while (readFrame(in) != null) {
                // swallow: never acknowledge
            }
        }));
        Events ev = new Events();
        MLLPClient c = client(raw.port(), ev);
        c.setTimeout(1);
        c.config("MaxRetries=0");
        MLLPException ex = assertThrows(MLLPException.class, () -> c.send(msg("NOACK")));
        assertEquals(MLLPException.ACK_TIMEOUT, ex.getCode());
        assertFalse(ex.getMessage().isEmpty());
        assertEquals(1, ev.done.size());
        assertEquals(MLLPException.ACK_TIMEOUT, ev.done.get(0).resultCode);
        assertEquals(AckKind.NONE, ev.done.get(0).ackKind);
        assertEquals(1, ev.done.get(0).attempts);
        assertEquals(0, c.getPending());
    }

    @Test
    @Timeout(30)
    public void wrongControlIdRaisesErrorEvent2043() throws Exception {
        RawServer raw = track(new RawServer((so, in, out) -> {
            byte[] m;
            while ((m = readFrame(in)) != null) {
                String id = controlIdOf(m);
                writeFrame(out, hl7Ack("AA", "NOT-" + id));   // matches nothing
                writeFrame(out, hl7Ack("AA", id));            // then the right one
            }
        }));
        Events ev = new Events();
        MLLPClient c = client(raw.port(), ev);
        c.config("AckMode=HL7");
        SendResult r = c.send(msg("MATCH-ME"));
        assertEquals(AckKind.AA, r.getAckKind());
        assertEquals(1, r.getAttempts());
        assertEquals(1, ev.errors.size(), "one Error event: " + ev.all);
        assertEquals(MLLPException.ACK_MISMATCH, ev.errors.get(0).errorCode);
        assertEquals(2, ev.acks.size());
        assertFalse(ev.acks.get(0).matched);
        assertEquals(0, ev.acks.get(0).messageId);
        assertEquals("NOT-MATCH-ME", ev.acks.get(0).controlId);
        assertTrue(ev.acks.get(1).matched);
        assertEquals(r.getMessageId(), ev.acks.get(1).messageId);
    }

    @Test
    @Timeout(30)
    public void applicationErrorFailsWith2041() throws Exception {
        RawServer raw = track(new RawServer((so, in, out) -> {
            byte[] m;
            while ((m = readFrame(in)) != null) {
                writeFrame(out, hl7Ack("AE", controlIdOf(m)));
            }
        }));
        Events ev = new Events();
        MLLPClient c = client(raw.port(), ev);
        c.config("AckMode=HL7");
        c.config("RetryOnNegative=False");
        MLLPException ex = assertThrows(MLLPException.class, () -> c.send(msg("AE1")));
        assertEquals(MLLPException.APP_ERROR, ex.getCode());
        assertEquals(AckKind.AE, ev.done.get(0).ackKind);
        assertEquals(1, ev.done.get(0).attempts);
    }

    @Test
    @Timeout(30)
    public void connectRefusedGivesSocketCode() throws Exception {
        int port;
        try (ServerSocket ss = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            port = ss.getLocalPort();
        }
        Events ev = new Events();
        MLLPClient c = client(port, ev);
        c.config("MaxRetries=0");
        MLLPException ex = assertThrows(MLLPException.class, c::connect);
        assertEquals(MLLPException.CONNECTION_REFUSED, ex.getCode());
        assertFalse(c.isConnected());
        MLLPException ex2 = assertThrows(MLLPException.class, () -> c.send(msg("REFUSED")));
        assertEquals(MLLPException.CONNECTION_REFUSED, ex2.getCode());
    }

    // ------------------------------------------------------------------ GC

    @Test
    @Timeout(60)
    public void gcWhileSending() throws Exception {
        MLLPServer s = server();
        AtomicBoolean stop = new AtomicBoolean();
        Thread gc = new Thread(() -> {
            while (!stop.get()) {
                System.gc();
                try {
                    Thread.sleep(2);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }, "gc-loop");
        gc.setDaemon(true);
        gc.start();
        try {
            AtomicInteger done = new AtomicInteger();
            AtomicInteger acks = new AtomicInteger();
            // The listener is referenced only by the client, the client only by this frame.
            MLLPClient c = client(s.getLocalPort(), new MLLPClientEventListener() {
                @Override
                public void sendDone(MLLPClientSendDoneEvent e) {
                    done.incrementAndGet();
                    System.gc();
                }

                @Override
                public void ackIn(MLLPClientAckInEvent e) {
                    acks.incrementAndGet();
                }
            });
            for (int i = 0; i < 30; i++) {
                assertEquals(AckKind.ACK, c.send(msg("GC" + i)).getAckKind());
            }
            for (int i = 0; i < 30; i++) {
                c.sendAsync(msg("GCA" + i));
            }
            long deadline = System.currentTimeMillis() + 20000;
            while (c.doEvents(100) > 0 && System.currentTimeMillis() < deadline) {
                System.gc();
            }
            assertEquals(60, done.get());
            assertEquals(60, acks.get());

            // Clients dropped without close(): the Cleaner frees them (no events, no crash).
            for (int i = 0; i < 10; i++) {
                MLLPClient abandoned = new MLLPClient("127.0.0.1", s.getLocalPort());
                abandoned.addMLLPClientEventListener(new MLLPClientEventListener() {
                    @Override
                    public void disconnected(MLLPClientDisconnectedEvent e) {
                        done.incrementAndGet();
                    }
                });
                abandoned.send(msg("ABANDON" + i));
            }
            waitUntil("the server saw the abandoned connections close", 20000, () -> {
                System.gc();
                return s.getConnectionCount() <= 1;
            });
            assertEquals(60, done.get(), "no event from a client freed by the Cleaner");
            assertEquals(AckKind.ACK, c.send(msg("AFTER")).getAckKind());
        } finally {
            stop.set(true);
            gc.join(5000);
        }
    }
}
