package mllp;

import static mllp.TestSupport.*;
import static org.junit.jupiter.api.Assertions.*;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

public class MLLPServerTest {
    private final List<MLLPServer> servers = new ArrayList<>();

    private MLLPServer track(MLLPServer s) {
        servers.add(s);
        return s;
    }

    private MLLPServer start(MLLPServerEventListener... ls) throws MLLPException {
        return track(listening(ls));
    }

    @AfterEach
    public void closeServers() {
        for (MLLPServer s : servers) {
            s.close();
        }
    }

    // ------------------------------------------------------------------ packaging

    @Test
    @Timeout(20)
    public void libmllpComesFromTheClasspath() {
        // Maven puts target/release/libmllp.so into the jar (and target/classes) as
        // linux-x86-64/libmllp.so; no jna.library.path or LD_LIBRARY_PATH is needed.
        Assumptions.assumeTrue(System.getProperty("jna.library.path", "").isEmpty(), "jna.library.path set");
        String path = MLLPServer.libraryPath().replace(File.separatorChar, '/');
        assertTrue(path.endsWith("/linux-x86-64/libmllp.so"), "libmllp loaded from " + path);
    }

    // ------------------------------------------------------------------ layout

    @Test
    @Timeout(20)
    public void structLayoutMatchesC() throws Exception {
        String path = System.getProperty("mllp.layout");
        // Maven writes it (src/test/c/layout.c, compiled and run before the tests); elsewhere skipped.
        Assumptions.assumeTrue(path != null, "no C layout file (mllp.layout)");
        assertTrue(new File(path).isFile(), "missing C layout file " + path);
        List<String> expected = Files.readAllLines(new File(path).toPath());
        List<String> actual = Arrays.asList(
                Structs.layout(new Structs.ConnectionRequest()),
                Structs.layout(new Structs.Status()),
                Structs.layout(new Structs.TransferBoundary()),
                Structs.layout(new Structs.Transfer()),
                Structs.layout(new Structs.AckOut()),
                Structs.layout(new Structs.Message()),
                Structs.layout(new Structs.Duplicate()),
                Structs.layout(new Structs.AckIn()),
                Structs.layout(new Structs.Error()),
                Structs.layout(new Structs.Log()),
                Structs.layout(new Structs.SslClientAuth()),
                Structs.layout(new Structs.SslConnectionRequest()),
                Structs.layout(new Structs.SslStatus()),
                Structs.layout(new Structs.SendResult()),
                Structs.layout(new Structs.ClientAckIn()),
                Structs.layout(new Structs.SendDone()),
                Structs.layout(new Structs.SslServerAuth()),
                Structs.layout(new Structs.Metrics()));
        assertEquals(expected, actual);
    }

    // ------------------------------------------------------------------ properties

    @Test
    @Timeout(20)
    public void propertiesAndDefaults() throws Exception {
        MLLPServer s = track(new MLLPServer());
        assertFalse(s.isListening());
        assertEquals("", s.getLocalHost());
        assertEquals(0, s.getLocalPort());
        assertEquals(0, s.getDefaultTimeout());
        assertFalse(s.isKeepAlive());
        assertEquals(2, s.getVersion());
        s.setDefaultTimeout(7);
        s.setKeepAlive(true);
        s.setVersion(MLLPServer.mvVersion1);
        s.setLocalHost("127.0.0.1");
        assertEquals(7, s.getDefaultTimeout());
        assertTrue(s.isKeepAlive());
        assertEquals(1, s.getVersion());
        assertEquals("127.0.0.1", s.getLocalHost());
        s.startListening();
        assertTrue(s.isListening());
        assertTrue(s.getLocalPort() > 0);
        MLLPException e = assertThrows(MLLPException.class, () -> s.setLocalPort(1234));
        assertEquals(106, e.getCode());
        e = assertThrows(MLLPException.class, () -> s.setLocalHost("0.0.0.0"));
        assertEquals(107, e.getCode());
        s.stopListening();
        assertFalse(s.isListening());
        s.reset();
        assertEquals(2, s.getVersion());
        assertEquals(0, s.getDefaultTimeout());
        assertNotNull(MLLPServer.libraryVersion());
        assertFalse(MLLPServer.errorDescription(670).isEmpty());
    }

    @Test
    @Timeout(20)
    public void configRoundTrip() throws Exception {
        MLLPServer s = track(new MLLPServer());
        assertEquals("", s.config("ReceiveTimeout=45"));
        assertEquals("45", s.config("ReceiveTimeout"));
        assertEquals("45", s.config("receivetimeout"));
        s.config("ACKChar=0x07");
        assertEquals("0x07", s.config("ACKChar"));
        s.config("CloseStreamAfterTransfer=false");
        assertEquals("False", s.config("CloseStreamAfterTransfer"));
        s.reset();
        assertEquals("True", s.config("CloseStreamAfterTransfer"));
    }

    @Test
    @Timeout(20)
    public void invalidCallsThrowWithReferenceCodes() throws Exception {
        MLLPServer s = track(new MLLPServer());
        MLLPException e = assertThrows(MLLPException.class, () -> s.config("NoSuchSetting"));
        assertEquals(2004, e.getCode());
        assertTrue(e.getMessage().toLowerCase().contains("nosuchsetting"), e.getMessage());
        e = assertThrows(MLLPException.class, () -> s.config("NoSuchSetting=1"));
        assertEquals(2004, e.getCode());
        e = assertThrows(MLLPException.class, () -> s.config("ReceiveTimeout=banana"));
        assertEquals(2005, e.getCode());
        e = assertThrows(MLLPException.class, () -> s.setVersion(3));
        assertEquals(2005, e.getCode());
        e = assertThrows(MLLPException.class, () -> s.disconnect("123456"));
        assertEquals(2002, e.getCode());
        e = assertThrows(MLLPException.class, () -> s.send("123456"));
        assertEquals(2002, e.getCode());
        e = assertThrows(MLLPException.class, () -> s.disconnect("not-a-number"));
        assertEquals(2001, e.getCode());
        e = assertThrows(MLLPException.class, () -> s.disconnect(123456L));
        assertEquals(2002, e.getCode());
        e = assertThrows(MLLPException.class, () -> s.send(-1L, new byte[] {1}));  // 2^64-1
        assertEquals(2002, e.getCode());
        // a lookup of an unknown id, given as a number or as any string, is Java's NoSuchElementException
        assertThrows(java.util.NoSuchElementException.class, () -> s.getConnection("77"));
        assertThrows(java.util.NoSuchElementException.class, () -> s.getConnection(77L));
        assertThrows(java.util.NoSuchElementException.class, () -> s.getConnection("abc"));
        assertThrows(java.util.NoSuchElementException.class, () -> s.getConnection(""));
        assertThrows(java.util.NoSuchElementException.class, () -> s.getConnection((String) null));
        assertNull(s.getConnections().get("77"));
        assertNull(s.getConnections().get("abc"));
        assertEquals(0, s.getConnectionCount());
    }

    @Test
    @Timeout(20)
    public void emptyValuesAndUnsupportedSettings() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = start(r);
        assertFalse(s.config("BuildInfo").isEmpty());
        MLLPException e = assertThrows(MLLPException.class, () -> s.config("FirewallHost=x"));
        assertEquals(2003, e.getCode());
        assertFalse(e.getMessage().isEmpty());
        try (Client c = new Client(s.getLocalPort())) {
            String id = r.next(MLLPServerConnectedEvent.class, 5000).connectionId;
            assertTrue(c.socket.isConnected());
            MLLPConnection conn = s.getConnection(id);
            assertArrayEquals(new byte[0], conn.getInputDataB());
            assertEquals("", conn.getInputData());
            assertEquals("", conn.getOutputData());
            assertEquals("", conn.getInputFileName());
            conn.setInputDataB(null);
            assertEquals("", conn.getInputData());
            conn.setInputData("h\u00e9llo");
            assertEquals("h\u00e9llo", conn.getInputData());
            assertEquals(6, conn.getInputDataB().length);
            assertNull(conn.getInputStream());
            conn.setInputStream(null); // clearing an unset stream is fine
        }
    }

    @Test
    @Timeout(20)
    public void addressInUse() throws Exception {
        MLLPServer a = start();
        MLLPServer b = track(new MLLPServer());
        b.setLocalHost("127.0.0.1");
        b.setLocalPort(a.getLocalPort());
        MLLPException e = assertThrows(MLLPException.class, b::startListening);
        assertEquals(10048, e.getCode());
    }

    @Test
    @Timeout(20)
    public void closedServerThrows() throws Exception {
        MLLPServer s = new MLLPServer();
        s.close();
        s.close(); // idempotent
        assertTrue(s.isClosed());
        MLLPException e = assertThrows(MLLPException.class, s::startListening);
        assertEquals(211, e.getCode());
        assertThrows(IllegalStateException.class, s::isListening);
    }

    // ------------------------------------------------------------------ connections

    @Test
    @Timeout(20)
    public void connectionRequestAccepted() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = start(r);
        try (Client c = new Client(s.getLocalPort())) {
            MLLPServerConnectionRequestEvent req = r.next(MLLPServerConnectionRequestEvent.class, 5000);
            assertEquals("127.0.0.1", req.address);
            assertEquals(c.socket.getLocalPort(), req.port);
            assertTrue(req.accept);
            MLLPServerConnectedEvent con = r.next(MLLPServerConnectedEvent.class, 5000);
            assertEquals(0, con.statusCode);
            assertEquals("OK", con.description);
            Map<String, MLLPConnection> m = s.getConnections();
            assertEquals(1, m.size());
            MLLPConnection conn = m.get(con.connectionId);
            assertNotNull(conn);
            assertEquals(con.connectionId, conn.getConnectionId());
            assertTrue(conn.isConnected());
            assertEquals("127.0.0.1", conn.getRemoteHost());
            assertEquals(c.socket.getLocalPort(), conn.getRemotePort());
            assertEquals("127.0.0.1", conn.getLocalAddress());
            assertEquals(0, conn.getTimeout());
            conn.setTimeout(3);
            assertEquals(3, conn.getTimeout());
            conn.setInputData("MSH|x");
            assertEquals("MSH|x", conn.getInputData());
            conn.setInputDataB(new byte[] {1, 2, 0, 3});
            assertArrayEquals(new byte[] {1, 2, 0, 3}, conn.getInputDataB());
            conn.setInputFileName("/tmp/in.hl7");
            assertEquals("/tmp/in.hl7", conn.getInputFileName());
            conn.setInputFileName("");
            assertEquals("", conn.getOutputFileName());
            assertSame(conn, s.getConnections().get(con.connectionId));
            // the id as a string or as a long, everywhere
            assertEquals(1, s.getConnectionCount());
            long lid = conn.getId();
            conn.setTimeout(0);   // asynchronous sends below
            assertEquals(con.connectionId, Long.toUnsignedString(lid));
            assertSame(conn, s.getConnection(con.connectionId));
            assertSame(conn, s.getConnection(lid));
            s.send(lid, "MSH|by long id".getBytes(StandardCharsets.US_ASCII));
            assertEquals("MSH|by long id", new String(c.readFrame(), StandardCharsets.US_ASCII));
            s.send(con.connectionId, "MSH|by string id".getBytes(StandardCharsets.US_ASCII));
            assertEquals("MSH|by string id", new String(c.readFrame(), StandardCharsets.US_ASCII));
            s.disconnect(lid);
            r.next(MLLPServerDisconnectedEvent.class, 5000);
            assertEquals(0, s.getConnectionCount());
            assertThrows(java.util.NoSuchElementException.class, () -> s.getConnection(lid));
            assertThrows(java.util.NoSuchElementException.class, () -> s.getConnection(con.connectionId));
            assertNull(s.getConnections().get(con.connectionId));
            MLLPException e = assertThrows(MLLPException.class, () -> conn.getRemoteHost());
            assertEquals(2002, e.getCode());
            assertFalse(conn.isConnected());
        }
    }

    @Test
    @Timeout(20)
    public void connectionRequestRefused() throws Exception {
        Recorder r = new Recorder() {
            @Override
            public void connectionRequest(MLLPServerConnectionRequestEvent e) {
                super.connectionRequest(e);
                e.accept = false;
            }
        };
        MLLPServer s = start(r);
        try (Client c = new Client(s.getLocalPort())) {
            r.next(MLLPServerConnectionRequestEvent.class, 5000);
            assertTrue(c.closedByPeer(), "refused connection must be closed");
        }
        Thread.sleep(200);
        for (Object o : r.events) {
            assertFalse(o instanceof MLLPServerConnectedEvent, "Connected fired for a refused connection");
        }
        assertTrue(s.getConnections().isEmpty());
    }

    // ------------------------------------------------------------------ receiving

    @Test
    @Timeout(20)
    public void messageArrivesWithExactBytes() throws Exception {
        byte[] msg = sample("adt_a01.hl7");
        Recorder r = new Recorder();
        ByteArrayOutputStream got = new ByteArrayOutputStream();
        AtomicReference<byte[]> outputData = new AtomicReference<>();
        AtomicReference<MLLPServer> self = new AtomicReference<>();
        MLLPServer s = start(r, new DefaultMLLPServerEventListener() {
            @Override
            public void transfer(MLLPServerTransferEvent e) {
                got.write(e.data, 0, e.data.length);
            }

            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                try {
                    // OutputData is readable from inside the event (a call back into the library).
                    outputData.set(self.get().getConnections().get(e.connectionId).getOutputDataB());
                } catch (MLLPException ex) {
                    throw new RuntimeException(ex);
                }
            }
        });
        self.set(s);
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame(msg);
            byte[] ack = c.readFrameRaw();
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, ack);
        }
        MLLPServerStartTransferEvent st = r.next(MLLPServerStartTransferEvent.class, 5000);
        assertEquals(1, st.messageSeq);
        long last = 0;
        MLLPServerTransferEvent t;
        Object o;
        List<Object> order = new ArrayList<>();
        while (!((o = r.events.poll(5, TimeUnit.SECONDS)) instanceof MLLPServerEndTransferEvent)) {
            assertNotNull(o, "EndTransfer never came");
            order.add(o);
            if (o instanceof MLLPServerTransferEvent) {
                t = (MLLPServerTransferEvent) o;
                assertEquals(st.connectionId, t.connectionId);
                assertTrue(t.bytesTransferred > last);
                last = t.bytesTransferred;
            }
        }
        assertEquals(msg.length, last);
        MLLPServerEndTransferEvent end = (MLLPServerEndTransferEvent) o;
        assertEquals(st.connectionId, end.connectionId);
        MLLPServerAckOutEvent ao = r.next(MLLPServerAckOutEvent.class, 5000);
        assertArrayEquals(msg, ao.message);
        assertEquals(1, ao.messageSeq);
        assertArrayEquals(msg, got.toByteArray());
        assertArrayEquals(msg, outputData.get());
    }

    @Test
    @Timeout(20)
    public void transferListenersAddedAndRemovedWhileListening() throws Exception {
        // transfer/startTransfer/endTransfer are registered with the library only while a
        // listener overrides them.
        byte[] msg = sample("adt_a01.hl7");
        List<Object> seen = java.util.Collections.synchronizedList(new ArrayList<>());
        MLLPServer s = start(new DefaultMLLPServerEventListener());
        MLLPServerEventListener counting = new DefaultMLLPServerEventListener() {
            @Override
            public void startTransfer(MLLPServerStartTransferEvent e) {
                seen.add(e);
            }

            @Override
            public void transfer(MLLPServerTransferEvent e) {
                seen.add(e);
            }

            @Override
            public void endTransfer(MLLPServerEndTransferEvent e) {
                seen.add(e);
            }
        };
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame(msg);
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
            assertTrue(seen.isEmpty());
            s.addMLLPServerEventListener(counting);
            c.sendFrame(msg);
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
            ByteArrayOutputStream got = new ByteArrayOutputStream();
            synchronized (seen) {
                assertTrue(seen.get(0) instanceof MLLPServerStartTransferEvent);
                assertEquals(2, ((MLLPServerStartTransferEvent) seen.get(0)).messageSeq);
                assertTrue(seen.get(seen.size() - 1) instanceof MLLPServerEndTransferEvent);
                for (Object o : seen.subList(1, seen.size() - 1)) {
                    MLLPServerTransferEvent t = (MLLPServerTransferEvent) o;
                    got.write(t.data, 0, t.data.length);
                }
            }
            assertArrayEquals(msg, got.toByteArray());
            int n = seen.size();
            s.removeMLLPServerEventListener(counting);
            c.sendFrame(msg);
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
            assertEquals(n, seen.size());
            // A listener implementing the interface directly always gets the events.
            s.addMLLPServerEventListener((MLLPServerEventListener) java.lang.reflect.Proxy.newProxyInstance(
                    getClass().getClassLoader(), new Class<?>[] {MLLPServerEventListener.class},
                    (proxy, m, args) -> {
                        switch (m.getName()) {
                            case "transfer": seen.add(args[0]); return null;
                            case "equals": return proxy == args[0];
                            case "hashCode": return System.identityHashCode(proxy);
                            case "toString": return "proxy listener";
                            default: return null;
                        }
                    }));
            c.sendFrame(msg);
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
            assertTrue(seen.size() > n);
        }
    }

    @Test
    @Timeout(20)
    public void ackOutRejectSendsNak() throws Exception {
        AtomicInteger n = new AtomicInteger();
        MLLPServer s = start(new DefaultMLLPServerEventListener() {
            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                // reject the first message, accept the second
                e.accept = n.incrementAndGet() != 1;
            }
        });
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame(sample("adt_a01.hl7"));
            assertArrayEquals(new byte[] {SB, NAK, EB, CR}, c.readFrameRaw());
            c.sendFrame(sample("adt_a01.hl7"));
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
        }
    }

    @Test
    @Timeout(20)
    public void hl7AckModeRejectCode() throws Exception {
        AtomicInteger n = new AtomicInteger();
        List<Integer> defaults = java.util.Collections.synchronizedList(new ArrayList<>());
        MLLPServer s = start(new DefaultMLLPServerEventListener() {
            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                defaults.add(e.rejectCode);
                int k = n.incrementAndGet();
                if (k == 1) {
                    e.accept = false;
                    e.rejectCode = MLLPServer.REJECT_AR;
                } else if (k == 2) {
                    e.accept = false; // default reject code: AE
                }
            }
        });
        s.config("AckMode=HL7");
        byte[] msg = sample("adt_a01.hl7");
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame(msg);
            String ack = new String(c.readFrame(), StandardCharsets.ISO_8859_1);
            assertTrue(ack.contains("\rMSA|AR|MSG00001"), ack);
            c.sendFrame(msg);
            ack = new String(c.readFrame(), StandardCharsets.ISO_8859_1);
            assertTrue(ack.contains("\rMSA|AE|MSG00001"), ack);
            c.sendFrame(msg);
            ack = new String(c.readFrame(), StandardCharsets.ISO_8859_1);
            assertTrue(ack.startsWith("MSH|") && ack.contains("\rMSA|AA|MSG00001"), ack);
        }
        assertEquals(Arrays.asList(1, 1, 1), defaults);
    }

    @Test
    @Timeout(20)
    public void version1SendsNoAcknowledgement() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = track(new MLLPServer());
        s.addMLLPServerEventListener(r);
        s.setVersion(MLLPServer.mvVersion1);
        s.setLocalHost("127.0.0.1");
        s.startListening();
        try (Client c = new Client(s.getLocalPort())) {
            c.socket.setSoTimeout(300);
            c.sendFrame(sample("adt_a01.hl7"));
            r.next(MLLPServerEndTransferEvent.class, 5000);
            assertFalse(c.closedByPeer()); // nothing arrives, connection stays open
        }
        for (Object o : r.events) {
            assertFalse(o instanceof MLLPServerAckOutEvent, "AckOut fired in version 1");
        }
    }

    @Test
    @Timeout(30)
    public void closeWhileOtherThreadsCall() throws Exception {
        for (int round = 0; round < 5; round++) {
            Recorder r = new Recorder();
            MLLPServer s = listening(r);
            Client c = new Client(s.getLocalPort());
            r.next(MLLPServerConnectedEvent.class, 5000);
            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> unexpected = new AtomicReference<>();
            Thread[] ts = new Thread[4];
            for (int k = 0; k < ts.length; k++) {
                ts[k] = new Thread(() -> {
                    while (!stop.get()) {
                        try {
                            for (MLLPConnection conn : s.getConnections().values()) {
                                conn.getRemoteHost();
                                conn.setInputData("MSH|z");
                            }
                            s.config("ReceiveTimeout");
                            s.isListening();
                        } catch (MLLPException e) {
                            if (e.getCode() != 211 && e.getCode() != 2002) {
                                unexpected.set(e);
                            }
                        } catch (IllegalStateException e) {
                            // a getter after close
                        } catch (Throwable t) {
                            unexpected.set(t);
                        }
                    }
                });
                ts[k].start();
            }
            c.sendFrame("MSH|x".getBytes(StandardCharsets.US_ASCII));
            Thread.sleep(20);
            s.close();
            stop.set(true);
            for (Thread t : ts) {
                t.join(5000);
                assertFalse(t.isAlive());
            }
            c.close();
            if (unexpected.get() != null) {
                throw new AssertionError(unexpected.get());
            }
        }
    }

    @Test
    @Timeout(20)
    public void outputStreamReceivesMessage() throws Exception {
        byte[] msg = sample("oru_r01.hl7");
        ByteArrayOutputStream sink = new ByteArrayOutputStream();
        AtomicBoolean closed = new AtomicBoolean();
        java.io.OutputStream os = new java.io.FilterOutputStream(sink) {
            @Override
            public void close() throws IOException {
                closed.set(true);
                super.close();
            }
        };
        AtomicReference<MLLPServer> self = new AtomicReference<>();
        Recorder r = new Recorder() {
            @Override
            public void connected(MLLPServerConnectedEvent e) {
                try {
                    self.get().getConnection(e.connectionId).setOutputStream(os);
                } catch (MLLPException ex) {
                    throw new RuntimeException(ex);
                }
                super.connected(e);
            }
        };
        MLLPServer s = start(r);
        self.set(s);
        try (Client c = new Client(s.getLocalPort())) {
            MLLPServerConnectedEvent con = r.next(MLLPServerConnectedEvent.class, 5000);
            assertSame(os, s.getConnection(con.connectionId).getOutputStream());
            c.sendFrame(msg);
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
            assertArrayEquals(msg, sink.toByteArray());
            waitUntil("stream closed after transfer", 5000, closed::get);
            assertNull(s.getConnection(con.connectionId).getOutputStream());
        }
    }

    @Test
    @Timeout(20)
    public void outputStreamKeptOpenWhenCloseStreamAfterTransferIsFalse() throws Exception {
        ByteArrayOutputStream sink = new ByteArrayOutputStream();
        AtomicBoolean closed = new AtomicBoolean();
        java.io.OutputStream os = new java.io.FilterOutputStream(sink) {
            @Override
            public void close() throws IOException {
                closed.set(true);
            }
        };
        Recorder r = new Recorder();
        MLLPServer s = start(r);
        s.config("CloseStreamAfterTransfer=False");
        try (Client c = new Client(s.getLocalPort())) {
            String id = r.next(MLLPServerConnectedEvent.class, 5000).connectionId;
            s.getConnection(id).setOutputStream(os);
            c.sendFrame("MSH|one".getBytes(StandardCharsets.US_ASCII));
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
            c.sendFrame("MSH|two".getBytes(StandardCharsets.US_ASCII));
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
            assertEquals("MSH|oneMSH|two", sink.toString("US-ASCII"));
            assertSame(os, s.getConnection(id).getOutputStream());
            s.disconnect(id);
            r.next(MLLPServerDisconnectedEvent.class, 5000);
        }
        Thread.sleep(100);
        assertFalse(closed.get(), "the binding must not close a stream when CloseStreamAfterTransfer is False");
    }

    @Test
    @Timeout(20)
    public void failingOutputStreamRefusesTheMessage() throws Exception {
        java.io.OutputStream bad = new java.io.OutputStream() {
            @Override
            public void write(int b) throws IOException {
                throw new IOException("disk full (test)");
            }
        };
        Recorder r = new Recorder();
        MLLPServer s = start(r);
        PrintStream oldErr = System.err;
        System.setErr(new PrintStream(new ByteArrayOutputStream(), true));
        try (Client c = new Client(s.getLocalPort())) {
            String id = r.next(MLLPServerConnectedEvent.class, 5000).connectionId;
            s.getConnection(id).setOutputStream(bad);
            c.sendFrame("MSH|one".getBytes(StandardCharsets.US_ASCII));
            assertArrayEquals(new byte[] {SB, NAK, EB, CR}, c.readFrameRaw());
        } finally {
            System.setErr(oldErr);
        }
    }

    // ------------------------------------------------------------------ sending

    @Test
    @Timeout(20)
    public void serverSendsAndAckInFires() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = start(r);
        byte[] msg = sample("adt_a01.hl7");
        try (Client c = new Client(s.getLocalPort())) {
            String id = r.next(MLLPServerConnectedEvent.class, 5000).connectionId;
            MLLPConnection conn = s.getConnections().get(id);
            conn.setInputDataB(msg);
            s.send(id);
            assertArrayEquals(msg, c.readFrame());
            c.out.write(new byte[] {SB, ACK, EB, CR});
            c.out.flush();
            MLLPServerAckInEvent ai = r.next(MLLPServerAckInEvent.class, 5000);
            assertEquals(id, ai.connectionId);
            assertTrue(ai.accepted);

            // a NAK: AckIn accepted=false and Error 670
            s.send(id, "MSH|second".getBytes(StandardCharsets.US_ASCII));
            assertEquals("MSH|second", new String(c.readFrame(), StandardCharsets.US_ASCII));
            c.out.write(new byte[] {SB, NAK, EB, CR});
            c.out.flush();
            ai = r.next(MLLPServerAckInEvent.class, 5000);
            assertFalse(ai.accepted);
            MLLPServerErrorEvent err = r.next(MLLPServerErrorEvent.class, 5000);
            assertEquals(670, err.errorCode);
            assertEquals(id, err.connectionId);
        }
    }

    @Test
    @Timeout(20)
    public void inputStreamIsSentAndClosed() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = start(r);
        byte[] msg = sample("oru_r01_1mib_ed.hl7");
        AtomicBoolean closed = new AtomicBoolean();
        InputStream in = new java.io.FilterInputStream(new ByteArrayInputStream(msg)) {
            @Override
            public void close() throws IOException {
                closed.set(true);
                super.close();
            }
        };
        try (Client c = new Client(s.getLocalPort())) {
            c.socket.setSoTimeout(10000);
            String id = r.next(MLLPServerConnectedEvent.class, 5000).connectionId;
            MLLPConnection conn = s.getConnection(id);
            conn.setInputStream(in);
            assertSame(in, conn.getInputStream());
            s.send(id);
            assertArrayEquals(msg, c.readFrame());
            waitUntil("input stream closed", 5000, closed::get);
            assertNull(conn.getInputStream());
        }
    }

    @Test
    @Timeout(20)
    public void synchronousSendWaitsForAckAndCanBeInterrupted() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = start(r);
        try (Client c = new Client(s.getLocalPort())) {
            String id = r.next(MLLPServerConnectedEvent.class, 5000).connectionId;
            MLLPConnection conn = s.getConnection(id);
            conn.setTimeout(10);
            conn.setInputData("MSH|sync");
            Thread answer = new Thread(() -> {
                try {
                    c.readFrame();
                    c.out.write(new byte[] {SB, ACK, EB, CR});
                    c.out.flush();
                } catch (IOException ignored) {
                    // the assertion below fails instead
                }
            });
            answer.start();
            s.send(id); // returns once the ACK arrives
            answer.join(5000);

            // no answer this time: interrupt the waiting send from another thread
            Thread interrupter = new Thread(() -> {
                try {
                    c.readFrame();
                    s.interrupt(id);
                } catch (Exception ignored) {
                    // the assertion below fails instead
                }
            });
            interrupter.start();
            long t0 = System.nanoTime();
            MLLPException e = assertThrows(MLLPException.class, () -> s.send(id));
            assertEquals(2011, e.getCode());
            assertTrue((System.nanoTime() - t0) < 8_000_000_000L);
            interrupter.join(5000);
        }
    }

    // ------------------------------------------------------------------ disconnect / shutdown

    @Test
    @Timeout(20)
    public void disconnectAndShutdown() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = start(r);
        int port = s.getLocalPort();
        try (Client a = new Client(port); Client b = new Client(port)) {
            String ida = r.next(MLLPServerConnectedEvent.class, 5000).connectionId;
            String idb = r.next(MLLPServerConnectedEvent.class, 5000).connectionId;
            assertEquals(2, s.getConnections().size());
            assertEquals(2, s.getConnectionCount());
            MLLPConnection ca = s.getConnection(ida);
            s.disconnect(ida);
            MLLPServerDisconnectedEvent d = r.next(MLLPServerDisconnectedEvent.class, 5000);
            assertEquals(ida, d.connectionId);
            assertFalse(ca.isConnected());
            assertEquals(1, s.getConnections().size());
            assertEquals(1, s.getConnectionCount());
            assertTrue(a.closedByPeer() || true);

            s.shutdown();
            d = r.next(MLLPServerDisconnectedEvent.class, 5000);
            assertEquals(idb, d.connectionId);
            waitUntil("not listening", 5000, () -> !s.isListening());
            assertTrue(s.getConnections().isEmpty());
            assertTrue(b.closedByPeer());
        }
        // usable again after shutdown
        s.startListening();
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame("MSH|again".getBytes(StandardCharsets.US_ASCII));
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
        }
    }

    @Test
    @Timeout(20)
    public void clientClosingFiresDisconnected() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = start(r);
        Client c = new Client(s.getLocalPort());
        String id = r.next(MLLPServerConnectedEvent.class, 5000).connectionId;
        c.close();
        MLLPServerDisconnectedEvent d = r.next(MLLPServerDisconnectedEvent.class, 5000);
        assertEquals(id, d.connectionId);
    }

    @Test
    @Timeout(20)
    public void closeWithClientsFiresDisconnected() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = listening(r);
        try (Client c = new Client(s.getLocalPort())) {
            r.next(MLLPServerConnectedEvent.class, 5000);
            s.close();
            r.next(MLLPServerDisconnectedEvent.class, 5000);
            assertTrue(c.closedByPeer());
        }
    }

    @Test
    @Timeout(30)
    public void closeFiresDisconnectedForEveryConnectionThreadMode() throws Exception {
        closeFiresDisconnectedForEveryConnection(false);
    }

    @Test
    @Timeout(30)
    public void closeFiresDisconnectedForEveryConnectionDoEventsMode() throws Exception {
        closeFiresDisconnectedForEveryConnection(true);
    }

    /**
     * close() (here: try-with-resources) with three clients connected fires Disconnected exactly
     * once for every connection, status 0, before it returns; in DoEvents mode on the closing
     * thread.
     */
    private void closeFiresDisconnectedForEveryConnection(boolean doEvents) throws Exception {
        final class Seen {
            final String id;
            final int status;
            final Thread thread;
            final Object source;

            Seen(MLLPServerDisconnectedEvent e) {
                id = e.connectionId;
                status = e.statusCode;
                thread = Thread.currentThread();
                source = e.getSource();
            }
        }
        List<String> connected = java.util.Collections.synchronizedList(new ArrayList<>());
        List<Seen> disconnected = java.util.Collections.synchronizedList(new ArrayList<>());
        DefaultMLLPServerEventListener l = new DefaultMLLPServerEventListener() {
            @Override
            public void connected(MLLPServerConnectedEvent e) {
                if (e.statusCode == 0) {
                    connected.add(e.connectionId);
                }
            }

            @Override
            public void disconnected(MLLPServerDisconnectedEvent e) {
                disconnected.add(new Seen(e));
            }
        };
        List<Client> clients = new ArrayList<>();
        MLLPServer server;
        try {
            try (MLLPServer s = new MLLPServer()) {
                server = s;
                s.addMLLPServerEventListener(l);
                s.config("EventMode=" + (doEvents ? "DoEvents" : "Thread"));
                s.setLocalHost("127.0.0.1");
                s.setLocalPort(0);
                s.startListening();
                for (int i = 0; i < 3; i++) {
                    clients.add(new Client(s.getLocalPort()));
                }
                long deadline = System.currentTimeMillis() + 5000;
                while (connected.size() < 3 && System.currentTimeMillis() < deadline) {
                    if (doEvents) {
                        s.doEvents(50);
                    } else {
                        Thread.sleep(5);
                    }
                }
                assertEquals(3, connected.size(), "Connected for each client");
                assertEquals(0, disconnected.size(), "no Disconnected before close");
            }
            assertTrue(server.isClosed());
            List<Seen> all;
            synchronized (disconnected) {
                all = new ArrayList<>(disconnected);
            }
            assertEquals(3, all.size(), "one Disconnected per connection");
            for (String id : connected) {
                assertEquals(1,
                        all.stream().filter(d -> d.id.equals(id)).count(), "Disconnected exactly once for " + id);
            }
            for (Seen d : all) {
                assertEquals(0, d.status);
                assertSame(server, d.source);
                if (doEvents) {
                    assertSame(Thread.currentThread(), d.thread, "DoEvents mode: delivered on the closing thread");
                } else {
                    assertNotSame(Thread.currentThread(), d.thread, "thread mode: delivered on the reactor thread");
                }
            }
            for (Client c : clients) {
                assertTrue(c.closedByPeer());
            }
        } finally {
            for (Client c : clients) {
                c.close();
            }
        }
    }

    // ------------------------------------------------------------------ threads and reentrancy

    @Test
    @Timeout(20)
    public void eventsArriveOnOneAttachedReactorThread() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = start(r);
        for (int i = 0; i < 3; i++) {
            try (Client c = new Client(s.getLocalPort())) {
                c.sendFrame(sample("adt_a01.hl7"));
                c.readFrameRaw();
            }
            r.next(MLLPServerDisconnectedEvent.class, 5000);
        }
        Thread reactor = s.reactorThread();
        assertNotNull(reactor);
        assertTrue(r.threads.size() > 10);
        for (Thread t : r.threads) {
            assertSame(reactor, t, "every event on the same Java Thread object");
        }
        assertTrue(reactor.isDaemon());
        assertTrue(reactor.getName().startsWith("mllp-reactor-"), reactor.getName());
        assertNotSame(Thread.currentThread(), reactor);
    }

    @Test
    @Timeout(20)
    public void reentrantCallsFromEvents() throws Exception {
        AtomicReference<MLLPServer> self = new AtomicReference<>();
        AtomicReference<Throwable> closeErr = new AtomicReference<>();
        AtomicReference<MLLPException> syncSendErr = new AtomicReference<>();
        AtomicReference<String> cfg = new AtomicReference<>();
        CountDownLatch done = new CountDownLatch(1);
        MLLPServer s = start(new DefaultMLLPServerEventListener() {
            @Override
            public void endTransfer(MLLPServerEndTransferEvent e) {
                MLLPServer srv = self.get();
                try {
                    srv.close();
                } catch (Throwable t) {
                    closeErr.set(t);
                }
                try {
                    cfg.set(srv.config("ReceiveTimeout"));
                    MLLPConnection c = srv.getConnection(e.connectionId);
                    c.setTimeout(5);
                    c.setInputData("MSH|reply");
                    srv.send(e.connectionId);
                } catch (MLLPException ex) {
                    syncSendErr.set(ex);
                }
                done.countDown();
            }
        });
        self.set(s);
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame("MSH|hello".getBytes(StandardCharsets.US_ASCII));
            assertTrue(done.await(5, TimeUnit.SECONDS));
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
        }
        assertTrue(closeErr.get() instanceof IllegalStateException);
        assertEquals(2006, ((MLLPException) closeErr.get().getCause()).getCode());
        assertNotNull(cfg.get());
        assertNotNull(syncSendErr.get());
        assertEquals(2006, syncSendErr.get().getCode());
        assertFalse(s.isClosed());
        assertTrue(s.isListening());
    }

    @Test
    @Timeout(20)
    public void throwingListenerDoesNotCrash() throws Exception {
        PrintStream oldErr = System.err;
        ByteArrayOutputStream errs = new ByteArrayOutputStream();
        Recorder r = new Recorder();
        MLLPServerEventListener thrower = new MLLPServerEventListener() {
            private void boom() {
                throw new IllegalStateException("boom from listener");
            }

            public void ackIn(MLLPServerAckInEvent e) { boom(); }
            public void ackOut(MLLPServerAckOutEvent e) { e.accept = false; boom(); }
            public void connected(MLLPServerConnectedEvent e) { boom(); }
            public void connectionRequest(MLLPServerConnectionRequestEvent e) { boom(); }
            public void disconnected(MLLPServerDisconnectedEvent e) { boom(); }
            public void endTransfer(MLLPServerEndTransferEvent e) { throw new OutOfMemoryError("fake"); }
            public void error(MLLPServerErrorEvent e) { boom(); }
            public void log(MLLPServerLogEvent e) { boom(); }
            public void message(MLLPServerMessageEvent e) { boom(); }
            public void duplicate(MLLPServerDuplicateEvent e) { boom(); }
            public void SSLClientAuthentication(MLLPServerSSLClientAuthenticationEvent e) { boom(); }
            public void SSLConnectionRequest(MLLPServerSSLConnectionRequestEvent e) { boom(); }
            public void SSLStatus(MLLPServerSSLStatusEvent e) { boom(); }
            public void startTransfer(MLLPServerStartTransferEvent e) { boom(); }
            public void transfer(MLLPServerTransferEvent e) { boom(); }
        };
        System.setErr(new PrintStream(errs, true));
        try {
            MLLPServer s = start(thrower, r);
            s.config("LogLevel=3");
            try (Client c = new Client(s.getLocalPort())) {
                r.next(MLLPServerConnectedEvent.class, 5000);
                c.sendFrame("MSH|x".getBytes(StandardCharsets.US_ASCII));
                // the thrower set accept=false before throwing: the NAK shows its change was kept
                assertArrayEquals(new byte[] {SB, NAK, EB, CR}, c.readFrameRaw());
                r.next(MLLPServerEndTransferEvent.class, 5000);
                c.sendFrame("MSH|y".getBytes(StandardCharsets.US_ASCII));
                assertArrayEquals(new byte[] {SB, NAK, EB, CR}, c.readFrameRaw());
            }
            r.next(MLLPServerDisconnectedEvent.class, 5000);
            assertTrue(s.isListening());
            s.close(); // while System.err is still captured: close logs too
        } finally {
            System.setErr(oldErr);
        }
        String out = errs.toString("UTF-8");
        assertTrue(out.contains("boom from listener"), out);
        assertTrue(out.contains("fake"), out);
        assertTrue(out.contains("listener message"), out);
    }

    @Test
    @Timeout(20)
    public void doEventsWaitsOneHundredMillisecondsByDefault() throws Exception {
        // the reference's default; a ported `while (...) doEvents();` loop must not spin a core
        assertEquals(100, MLLPServer.DEFAULT_DO_EVENTS_WAIT_MS);
        MLLPServer s = track(new MLLPServer());
        s.config("EventMode=DoEvents");
        s.setLocalHost("127.0.0.1");
        s.startListening();
        long t0 = System.nanoTime();
        for (int i = 0; i < 3; i++) {
            s.doEvents();   // nothing to deliver: waits the default each time
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms >= 270, "three idle doEvents() took " + ms + " ms");
        assertEquals(0, s.doEvents(0));
    }

    @Test
    @Timeout(20)
    public void doEventsModeDeliversOnCallingThread() throws Exception {
        Recorder r = new Recorder();
        MLLPServer s = track(new MLLPServer());
        s.addMLLPServerEventListener(r);
        s.config("EventMode=DoEvents");
        s.setLocalHost("127.0.0.1");
        s.startListening();
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame("MSH|de".getBytes(StandardCharsets.US_ASCII));
            long deadline = System.currentTimeMillis() + 5000;
            boolean sawEnd = false;
            while (!sawEnd && System.currentTimeMillis() < deadline) {
                s.doEvents();
                for (Object o : r.events) {
                    sawEnd |= o instanceof MLLPServerEndTransferEvent;
                }
            }
            assertTrue(sawEnd);
            // the ACK follows the AckOut event, which doEvents delivered
            long deadline2 = System.currentTimeMillis() + 5000;
            byte[][] ack = new byte[1][];
            Thread reader = new Thread(() -> {
                try {
                    ack[0] = c.readFrameRaw();
                } catch (IOException ignored) {
                    // checked below
                }
            });
            reader.start();
            while (reader.isAlive() && System.currentTimeMillis() < deadline2) {
                s.doEvents(50);
            }
            reader.join(1000);
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, ack[0]);
        }
        for (Thread t : r.threads) {
            assertSame(Thread.currentThread(), t);
        }
        MLLPException e = assertThrows(MLLPException.class, () -> s.doEvents(-1));
        assertEquals(2001, e.getCode());
    }

    // ------------------------------------------------------------------ GC and lifetime

    @Test
    @Timeout(60)
    public void gcWhileTrafficFlows() throws Exception {
        AtomicInteger ends = new AtomicInteger();
        AtomicBoolean stop = new AtomicBoolean();
        Thread gc = new Thread(() -> {
            while (!stop.get()) {
                System.gc();
                try {
                    Thread.sleep(5);
                } catch (InterruptedException e) {
                    return;
                }
            }
        });
        gc.setDaemon(true);
        gc.start();
        try {
            // servers created and dropped (closed) while GC runs: their callbacks must survive
            for (int i = 0; i < 3; i++) {
                new MLLPServer().close();
            }
            // an unclosed, unreferenced server stays alive (kept reachable until close)
            new MLLPServer().setLocalPort(0);
            MLLPServer s = start(new DefaultMLLPServerEventListener() {
                @Override
                public void endTransfer(MLLPServerEndTransferEvent e) {
                    ends.incrementAndGet();
                    byte[] garbage = new byte[1 << 16]; // allocation pressure on the reactor thread
                    garbage[0] = 1;
                }
            });
            byte[] msg = sample("adt_a01.hl7");
            Thread[] clients = new Thread[4];
            AtomicReference<Throwable> fail = new AtomicReference<>();
            for (int k = 0; k < clients.length; k++) {
                clients[k] = new Thread(() -> {
                    try (Client c = new Client(s.getLocalPort())) {
                        for (int i = 0; i < 100; i++) {
                            c.sendFrame(msg);
                            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
                        }
                    } catch (Throwable t) {
                        fail.set(t);
                    }
                });
                clients[k].start();
            }
            for (Thread t : clients) {
                t.join(50000);
            }
            if (fail.get() != null) {
                throw new AssertionError(fail.get());
            }
            waitUntil("all EndTransfer events", 5000, () -> ends.get() == 400);

            // a listening server nothing refers to: collections must not take its callbacks
            AtomicInteger orphanEnds = new AtomicInteger();
            java.lang.ref.WeakReference<MLLPServer> orphanRef;
            int orphanPort;
            {
                MLLPServer orphan = listening(new DefaultMLLPServerEventListener() {
                    @Override
                    public void endTransfer(MLLPServerEndTransferEvent e) {
                        orphanEnds.incrementAndGet();
                    }
                });
                orphanPort = orphan.getLocalPort();
                orphanRef = new java.lang.ref.WeakReference<>(orphan);
            }
            for (int i = 0; i < 10; i++) {
                System.gc();
                Thread.sleep(20);
            }
            try (Client c = new Client(orphanPort)) {
                for (int i = 0; i < 20; i++) {
                    c.sendFrame(msg);
                    assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
                    System.gc();
                }
            }
            waitUntil("orphan's EndTransfer events", 5000, () -> orphanEnds.get() == 20);
            MLLPServer orphan = orphanRef.get();
            assertNotNull(orphan, "an unclosed server is kept reachable");
            orphan.close();
        } finally {
            stop.set(true);
            gc.join(2000);
        }
    }

    // ------------------------------------------------------------------ JVM exit (child processes)

    private static String runChild(String mode, int expectExit) throws Exception {
        String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
        List<String> cmd = new ArrayList<>(Arrays.asList(java, "-cp", System.getProperty("java.class.path")));
        String jnaPath = System.getProperty("jna.library.path", "");
        if (!jnaPath.isEmpty()) {
            cmd.add("-Djna.library.path=" + jnaPath);
        }
        cmd.addAll(Arrays.asList("-Dmllp.samples=" + samples(), "-XX:+UseSerialGC", "mllp.ExitChild", mode));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        Path log = Files.createTempFile("mllp-exit-child", ".log");
        pb.redirectOutput(log.toFile());
        Process p = pb.start();
        boolean finished = p.waitFor(30, TimeUnit.SECONDS);
        String out = new String(Files.readAllBytes(log), StandardCharsets.UTF_8);
        Files.deleteIfExists(log);
        if (!finished) {
            p.destroyForcibly();
            fail("child '" + mode + "' hung at exit:\n" + out);
        }
        assertEquals(expectExit, p.exitValue(), "child '" + mode + "' exit code; output:\n" + out);
        assertFalse(out.contains("hs_err") || out.contains("SIGSEGV") || out.contains("fatal error"), out);
        assertTrue(out.contains("CHILD-DONE"), out);
        return out;
    }

    @Test
    @Timeout(40)
    public void exitWhileListeningWithClientConnected() throws Exception {
        runChild("return", 0);
    }

    @Test
    @Timeout(40)
    public void systemExitWhileListeningWithClientConnected() throws Exception {
        runChild("exit", 3);
    }

    @Test
    @Timeout(40)
    public void systemExitFromInsideAnEvent() throws Exception {
        runChild("exit-in-event", 4);
    }

    @Test
    @Timeout(40)
    public void exitAfterGcStressWithOpenServers() throws Exception {
        runChild("gc", 0);
    }

    // ------------------------------------------------------------------ issue 11

    /** A Recorder that also records the Message and Duplicate events. */
    static class Recorder11 extends Recorder {
        final List<MLLPServerMessageEvent> messages = java.util.Collections.synchronizedList(new ArrayList<>());
        final List<MLLPServerDuplicateEvent> duplicates = java.util.Collections.synchronizedList(new ArrayList<>());
        final List<MLLPServerErrorEvent> errors = java.util.Collections.synchronizedList(new ArrayList<>());
        final List<MLLPServerAckOutEvent> ackOuts = java.util.Collections.synchronizedList(new ArrayList<>());

        @Override
        public void ackOut(MLLPServerAckOutEvent e) {
            ackOuts.add(e);
            super.ackOut(e);
        }

        @Override
        public void message(MLLPServerMessageEvent e) {
            messages.add(e);
            events.add(e);
        }

        @Override
        public void duplicate(MLLPServerDuplicateEvent e) {
            duplicates.add(e);
            events.add(e);
        }

        @Override
        public void error(MLLPServerErrorEvent e) {
            errors.add(e);
            super.error(e);
        }
    }

    /** An HL7 message from MSH fields 3.. (MSH-1 and MSH-2 are added) and further segments. */
    static byte[] hl7(String[] mshFrom3, String... segments) {
        StringBuilder b = new StringBuilder("MSH|^~\\&");
        for (String f : mshFrom3) {
            b.append('|').append(f);
        }
        b.append('\r');
        for (String seg : segments) {
            b.append(seg).append('\r');
        }
        return b.toString().getBytes(StandardCharsets.ISO_8859_1);
    }

    /** The value of MSH-n (n >= 3) of an HL7 message, or "" when absent. */
    static String mshField(byte[] msg, int n) {
        String text = new String(msg, StandardCharsets.ISO_8859_1);
        int start = text.indexOf("MSH|");
        String msh = text.substring(start, text.indexOf('\r', start) < 0 ? text.length() : text.indexOf('\r', start));
        String[] f = msh.split("\\|", -1);
        return n - 1 < f.length ? f[n - 1] : "";
    }

    /** Asserts no byte arrives on the client for {@code millis}. */
    static void assertNothingArrives(Client c, int millis) throws IOException {
        int old = c.socket.getSoTimeout();
        c.socket.setSoTimeout(millis);
        try {
            int b = c.in.read();
            fail("unexpected data from the server: " + (b < 0 ? "EOF" : String.format("byte 0x%02X", b)));
        } catch (java.net.SocketTimeoutException expected) {
            // nothing came
        } finally {
            c.socket.setSoTimeout(old);
        }
    }

    @Test
    @Timeout(20)
    public void newSettingsAndConstants() throws Exception {
        MLLPServer s = track(new MLLPServer());
        assertEquals("0", s.config("DuplicateWindow"));
        s.config("DuplicateWindow=10");
        assertEquals("10", s.config("DuplicateWindow"));
        s.config("ProcessBatch=True");
        assertTrue(s.config("ProcessBatch").equalsIgnoreCase("true"));
        s.config("DecodeToUTF8=True");
        assertTrue(s.config("DecodeToUTF8").equalsIgnoreCase("true"));
        s.config("DefaultCharset=8859/1");
        try {
            s.config("DefaultCharset=NO-SUCH-CHARSET");
            fail("a bad DefaultCharset was accepted");
        } catch (MLLPException e) {
            assertEquals(MLLPException.INVALID_VALUE, e.getCode());
        }
        s.config("DefaultCharset=");
        assertEquals(0, s.getDuplicateCount());
        assertEquals(0, MLLPServer.ACK_AA);
        assertEquals(MLLPServer.REJECT_AE, MLLPServer.ACK_AE);
        assertEquals(MLLPServer.REJECT_AR, MLLPServer.ACK_AR);
        assertEquals(5, MLLPServer.ACK_CR);
        assertEquals(2030, MLLPException.BAD_BATCH);
        assertEquals(2031, MLLPException.CHARSET);
        assertEquals(2032, MLLPException.DUPLICATE_IN_PROGRESS);
        for (int code : new int[] {212, 213, 1120, 2010, 2030, 2031, 2032}) {
            String d = MLLPServer.errorDescription(code);
            assertTrue(d != null && !d.isEmpty(), "description of " + code);
        }
    }

    @Test
    @Timeout(20)
    public void metricsCountKnownTraffic() throws Exception {
        MLLPServer s = track(new MLLPServer());
        int[] n = {0};
        s.addMLLPServerEventListener(new DefaultMLLPServerEventListener() {
            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                e.accept = (n[0]++ % 2) == 0; // ACK, NAK, ACK
            }
        });
        assertEquals(0, s.getMetrics().getMessagesReceived());
        s.setLocalHost("127.0.0.1");
        s.startListening();
        byte[] msg = sample("adt_a01.hl7");
        try (Client c = new Client(s.getLocalPort())) {
            for (byte want : new byte[] {ACK, NAK, ACK}) {
                c.sendFrame(msg);
                assertArrayEquals(new byte[] {SB, want, EB, CR}, c.readFrameRaw());
            }
            waitUntil("three replies counted", 5000,
                    () -> s.getMetrics().getAcksSent() + s.getMetrics().getNaksSent() == 3);
            MLLPServerMetrics m = s.getMetrics();
            assertEquals(1, m.getConnectionsAccepted());
            assertEquals(1, m.getConnectionsOpen());
            assertEquals(0, m.getConnectionsRefused());
            assertEquals(3, m.getMessagesReceived());
            assertEquals(2, m.getMessagesAccepted());
            assertEquals(1, m.getMessagesRefused());
            assertEquals(0, m.getMessagesDuplicate());
            assertEquals(3L * (msg.length + 3), m.getBytesIn());
            assertEquals(12, m.getBytesOut());
            assertEquals(2, m.getAcksSent());
            assertEquals(1, m.getNaksSent());
            assertEquals(0, m.getErrors());
            assertEquals(3, m.getAckLatencyCount());
            assertTrue(m.getAckLatencySumSeconds() > 0);
            String text = s.getMetricsText();
            assertTrue(text.contains("# TYPE mllp_ack_latency_seconds histogram\n"), text);
            assertTrue(text.contains("\nmllp_messages_total{result=\"refused\"} 1\n"), text);
            assertTrue(text.contains("\nmllp_acks_sent_total{kind=\"nak\"} 1\n"), text);
        }
        waitUntil("connection closed", 5000, () -> s.getMetrics().getConnectionsOpen() == 0);
    }

    @Test
    @Timeout(20)
    public void duplicateGetsTheOriginalReplyAgain() throws Exception {
        Recorder11 r = new Recorder11();
        MLLPServer s = track(new MLLPServer());
        s.addMLLPServerEventListener(r);
        s.config("DuplicateWindow=10");
        s.config("AckMode=HL7");
        s.setLocalHost("127.0.0.1");
        s.startListening();
        byte[] msg = sample("adt_a01.hl7");
        byte[] first, second;
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame(msg);
            first = c.readFrameRaw();
            c.sendFrame(msg);
            second = c.readFrameRaw();
        }
        String ack = new String(first, StandardCharsets.ISO_8859_1);
        assertTrue(ack.contains("\rMSA|AA|MSG00001"), ack);
        assertArrayEquals(first, second, "the duplicate's reply is the original's, byte for byte");
        MLLPServerDuplicateEvent d = r.next(MLLPServerDuplicateEvent.class, 5000);
        assertEquals("MSG00001", d.controlId);
        assertArrayEquals(msg, d.message);
        assertArrayEquals(java.util.Arrays.copyOfRange(first, 1, first.length - 2), d.reply);
        Thread.sleep(200);
        assertEquals(1, r.duplicates.size());
        assertEquals(1, r.messages.size(), "the duplicate is not delivered");
        assertArrayEquals(msg, r.messages.get(0).data);
        assertEquals(1, r.ackOuts.size());
        assertEquals(1, s.getDuplicateCount());
        assertEquals("1", s.config("DuplicateCount"));
    }

    @Test
    @Timeout(20)
    public void batchDeliversEachMessageAndGetsOneReply() throws Exception {
        byte[] batch = sample("batch_adt.hl7");
        for (String mode : new String[] {"MLLP", "HL7"}) {
            Recorder11 r = new Recorder11();
            MLLPServer s = track(new MLLPServer());
            s.addMLLPServerEventListener(r);
            s.config("ProcessBatch=True");
            s.config("AckMode=" + mode);
            s.setLocalHost("127.0.0.1");
            s.startListening();
            try (Client c = new Client(s.getLocalPort())) {
                c.sendFrame(batch);
                byte[] reply = c.readFrameRaw();
                if (mode.equals("MLLP")) {
                    assertArrayEquals(new byte[] {SB, ACK, EB, CR}, reply);
                } else {
                    String t = new String(reply, StandardCharsets.ISO_8859_1);
                    assertTrue(t.contains("BHS|"), t);
                    for (int i = 0; i < 3; i++) {
                        assertTrue(t.contains("\rMSA|AA|B0000" + i), t);
                    }
                    assertTrue(t.contains("BTS|3"), t);
                }
                assertNothingArrives(c, 400);
            }
            waitUntil("3 Message events", 5000, () -> r.messages.size() >= 3);
            Thread.sleep(100);
            assertEquals(3, r.messages.size(), mode);
            for (int i = 0; i < 3; i++) {
                MLLPServerMessageEvent m = r.messages.get(i);
                String text = new String(m.data, StandardCharsets.ISO_8859_1);
                assertTrue(text.startsWith("MSH|"), text);
                assertEquals("B0000" + i, mshField(m.data, 10));
                assertFalse(text.contains("BHS|") || text.contains("BTS|"), text);
                assertEquals(i + 1, m.messageSeq);
            }
            assertEquals(3, r.ackOuts.size());
        }
    }

    @Test
    @Timeout(20)
    public void latin1MessageIsDecodedToUtf8() throws Exception {
        Recorder11 r = new Recorder11();
        MLLPServer s = track(new MLLPServer());
        s.addMLLPServerEventListener(r);
        s.config("DecodeToUTF8=True");
        s.setLocalHost("127.0.0.1");
        s.startListening();
        byte[] msg = hl7(new String[] {"SND", "FAC", "RCV", "FAC", "20260101120000", "", "ADT^A01", "CS001", "P",
                "2.5", "", "", "", "", "", "8859/1"}, "PID|1||42||Ren\u00e9^Jos\u00e9");
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame(msg);
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
        }
        MLLPServerStartTransferEvent st = r.next(MLLPServerStartTransferEvent.class, 5000);
        MLLPServerEndTransferEvent en = r.next(MLLPServerEndTransferEvent.class, 5000);
        MLLPServerMessageEvent m = r.next(MLLPServerMessageEvent.class, 5000);
        MLLPServerAckOutEvent ao = r.next(MLLPServerAckOutEvent.class, 5000);
        byte[] expected = new String(msg, StandardCharsets.ISO_8859_1).getBytes(StandardCharsets.UTF_8);
        assertArrayEquals(expected, m.data);
        assertTrue(indexOf(m.data, new byte[] {(byte) 0xC3, (byte) 0xA9}) >= 0);
        assertEquals(-1, indexOf(m.data, new byte[] {(byte) 0xE9}));
        assertEquals("8859/1", m.encoding);
        assertEquals("8859/1", m.charset);
        assertTrue(m.decoded);
        assertEquals(m.messageSeq, st.messageSeq);
        for (String[] ce : new String[][] {{st.charset, st.encoding}, {en.charset, en.encoding},
                {ao.charset, ao.encoding}}) {
            assertEquals("8859/1", ce[0]);
            assertEquals("8859/1", ce[1]);
        }
        assertArrayEquals(expected, ao.message);
    }

    @Test
    @Timeout(20)
    public void plainMessageHasNoCharsetAndIsNotDecoded() throws Exception {
        Recorder11 r = new Recorder11();
        MLLPServer s = start(r);
        byte[] msg = sample("adt_a01.hl7");
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame(msg);
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
        }
        MLLPServerMessageEvent m = r.next(MLLPServerMessageEvent.class, 5000);
        assertArrayEquals(msg, m.data);
        assertEquals("", m.charset);
        assertFalse(m.decoded);
        assertNotNull(m.encoding);
    }

    static int indexOf(byte[] hay, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= hay.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (hay[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        return -1;
    }

    @Test
    @Timeout(20)
    public void acknowledgeWithAndAckOutReplySendExactBytes() throws Exception {
        byte[] custom = ("MSH|^~\\&|RCV|FAC|SND|FAC|20260101120000||ACK|CUSTOM1|P|2.5\rMSA|AA|MSG00001|custom\r")
                .getBytes(StandardCharsets.ISO_8859_1);
        byte[] inHandler = ("MSH|^~\\&|RCV|FAC|SND|FAC|20260101120000||ACK|CUSTOM2|P|2.5\rMSA|AE|MSG00001|set in AckOut\r")
                .getBytes(StandardCharsets.ISO_8859_1);
        java.util.concurrent.BlockingQueue<long[]> deferred = new java.util.concurrent.LinkedBlockingQueue<>();
        AtomicInteger n = new AtomicInteger();
        MLLPServer s = track(new MLLPServer());
        s.addMLLPServerEventListener(new DefaultMLLPServerEventListener() {
            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                assertNull(e.reply);
                if (n.incrementAndGet() == 1) {
                    e.defer = true;
                    deferred.add(new long[] {Long.parseUnsignedLong(e.connectionId), e.messageSeq});
                } else {
                    e.reply = inHandler.clone();
                }
            }
        });
        s.config("AckMode=HL7");
        s.setLocalHost("127.0.0.1");
        s.startListening();
        byte[] msg = sample("adt_a01.hl7");
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame(msg);
            long[] d = deferred.poll(5, TimeUnit.SECONDS);
            assertNotNull(d, "AckOut never came");
            assertNothingArrives(c, 300);
            AtomicReference<Throwable> failed = new AtomicReference<>();
            Thread t = new Thread(() -> {
                try {
                    s.acknowledgeWith(Long.toUnsignedString(d[0]), d[1], custom);
                } catch (Throwable ex) {
                    failed.set(ex);
                }
            });
            t.start();
            t.join(5000);
            assertNull(failed.get());
            assertArrayEquals(frame(custom), c.readFrameRaw());
            c.sendFrame(msg);
            assertArrayEquals(frame(inHandler), c.readFrameRaw());
        }
        // MLLP mode: the reply is the one ACK/NAK byte.
        MLLPServer m = start(new DefaultMLLPServerEventListener() {
            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                e.reply = new byte[] {NAK};
            }
        });
        try (Client c = new Client(m.getLocalPort())) {
            c.sendFrame(msg);
            assertArrayEquals(new byte[] {SB, NAK, EB, CR}, c.readFrameRaw());
        }
    }

    @Test
    @Timeout(20)
    public void sendAppAckFollowsMsh16() throws Exception {
        Recorder11 r = new Recorder11();
        MLLPServer s = track(new MLLPServer());
        s.addMLLPServerEventListener(r);
        s.config("AckMode=HL7");
        s.setLocalHost("127.0.0.1");
        s.startListening();
        byte[] al = hl7(new String[] {"SND", "FAC", "RCV", "FAC", "20260101120000", "", "ADT^A01", "APP001", "P",
                "2.5", "", "", "", "AL"}, "PID|1||42");
        byte[] ne = hl7(new String[] {"SND", "FAC", "RCV", "FAC", "20260101120000", "", "ADT^A01", "APP002", "P",
                "2.5", "", "", "", "NE"}, "PID|1||43");
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame(al);
            String accept = new String(c.readFrame(), StandardCharsets.ISO_8859_1);
            assertTrue(accept.contains("\rMSA|CA|APP001"), "enhanced mode: accept ACK " + accept);
            MLLPServerMessageEvent m = r.next(MLLPServerMessageEvent.class, 5000);
            assertTrue(s.sendAppAck(m.connectionId, m.data, MLLPServer.ACK_AA, null));
            byte[] app = c.readFrame();
            String appText = new String(app, StandardCharsets.ISO_8859_1);
            assertTrue(appText.startsWith("MSH|"), appText);
            assertTrue(appText.contains("\rMSA|AA|APP001"), appText);
            assertEquals("ACK", mshField(app, 9).split("\\^")[0]);
            c.out.write(new byte[] {SB, ACK, EB, CR});   // the client acknowledges the server's message
            c.out.flush();
            // through the connection, with text
            assertTrue(s.getConnection(m.connectionId).sendAppAck(m.data, MLLPServer.ACK_AE, "oops"));
            appText = new String(c.readFrame(), StandardCharsets.ISO_8859_1);
            assertTrue(appText.contains("\rMSA|AE|APP001|oops"), appText);
            c.out.write(new byte[] {SB, ACK, EB, CR});
            c.out.flush();

            c.sendFrame(ne);
            c.readFrame();
            m = r.next(MLLPServerMessageEvent.class, 5000);
            assertFalse(s.sendAppAck(m.connectionId, m.data, MLLPServer.ACK_AA), "MSH-16=NE: no application ACK");
            assertNothingArrives(c, 300);
        }
    }

    @Test
    @Timeout(20)
    public void buildAckMakesFreshControlIds() throws Exception {
        byte[] msg = sample("adt_a01.hl7");
        byte[] a = MLLPServer.buildAck(msg, MLLPServer.ACK_AA, null);
        byte[] b = MLLPServer.buildAck(msg, MLLPServer.ACK_AA);
        for (byte[] x : new byte[][] {a, b}) {
            String t = new String(x, StandardCharsets.ISO_8859_1);
            assertTrue(t.startsWith("MSH|"), t);
            assertTrue(t.contains("\rMSA|AA|MSG00001"), t);
            assertFalse(mshField(x, 10).isEmpty(), "MSH-10 set");
            assertFalse(mshField(x, 7).isEmpty(), "MSH-7 set");
        }
        assertNotEquals(mshField(a, 10), mshField(b, 10));
        String e = new String(MLLPServer.buildAck(msg, MLLPServer.ACK_AE, "bad PID"), StandardCharsets.ISO_8859_1);
        assertTrue(e.contains("\rMSA|AE|MSG00001|bad PID"), e);
        String cr = new String(MLLPServer.buildAck(msg, MLLPServer.ACK_CR, null), StandardCharsets.ISO_8859_1);
        assertTrue(cr.contains("\rMSA|CR|MSG00001"), cr);
        java.util.Set<String> ids = new java.util.HashSet<>();
        for (int i = 0; i < 200; i++) {
            assertTrue(ids.add(mshField(MLLPServer.buildAck(msg, MLLPServer.ACK_AA), 10)));
        }
    }

    @Test
    @Timeout(20)
    public void refusalsAreReportedThroughError() throws Exception {
        Recorder11 r = new Recorder11();
        List<String> logs = java.util.Collections.synchronizedList(new ArrayList<>());
        MLLPServer s = track(new MLLPServer());
        s.addMLLPServerEventListener(r);
        s.addMLLPServerEventListener(new DefaultMLLPServerEventListener() {
            @Override
            public void log(MLLPServerLogEvent e) {
                logs.add(e.message);
            }
        });
        s.config("ProcessBatch=True");
        s.config("DecodeToUTF8=True");
        s.config("DuplicateWindow=10");
        s.setLocalHost("127.0.0.1");
        s.startListening();
        String batch = new String(sample("batch_adt.hl7"), StandardCharsets.ISO_8859_1);
        assertTrue(batch.contains("BTS|3"));
        byte[] badBatch = batch.replace("BTS|3", "BTS|2").getBytes(StandardCharsets.ISO_8859_1);
        byte[] badUtf8 = hl7(new String[] {"SND", "FAC", "RCV", "FAC", "20260101120000", "", "ADT^A01", "BAD8", "P",
                "2.5", "", "", "", "", "", "UNICODE UTF-8"}, "PID|1||42||X\u00ff\u00fe");
        byte[] msg = sample("adt_a01.hl7");
        byte[] sameIdOtherBytes = new String(msg, StandardCharsets.ISO_8859_1).replace("PID|", "PID|9")
                .getBytes(StandardCharsets.ISO_8859_1);
        AtomicInteger reject = new AtomicInteger(1);
        s.addMLLPServerEventListener(new DefaultMLLPServerEventListener() {
            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                if (reject.getAndSet(0) == 1) {
                    e.accept = false;   // the first adt_a01 is refused: not remembered
                }
            }
        });
        try (Client c = new Client(s.getLocalPort())) {
            c.sendFrame(badBatch);
            assertArrayEquals(new byte[] {SB, NAK, EB, CR}, c.readFrameRaw(), "malformed batch: NAK");
            c.sendFrame(badUtf8);
            assertArrayEquals(new byte[] {SB, NAK, EB, CR}, c.readFrameRaw(), "unconvertible message: NAK");
            waitUntil("Error events", 5000, () -> r.errors.size() >= 2);
            assertEquals(0, r.messages.size(), "nothing delivered");
            assertEquals(MLLPException.BAD_BATCH, r.errors.get(0).errorCode);
            assertEquals(MLLPException.CHARSET, r.errors.get(1).errorCode);

            c.sendFrame(msg);
            assertArrayEquals(new byte[] {SB, NAK, EB, CR}, c.readFrameRaw());
            c.sendFrame(msg);   // the refused original was not remembered: delivered again
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
            c.sendFrame(msg);   // now a duplicate (MLLP mode: the ACK byte again)
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
            c.sendFrame(sameIdOtherBytes);   // same MSH-3/4/10, other bytes: delivered
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, c.readFrameRaw());
        }
        waitUntil("3 Message events", 5000, () -> r.messages.size() >= 3);
        waitUntil("1 Duplicate event", 5000, () -> r.duplicates.size() >= 1);
        Thread.sleep(100);
        assertEquals(3, r.messages.size());
        assertEquals(1, r.duplicates.size());
        assertArrayEquals(new byte[] {ACK}, r.duplicates.get(0).reply);
        assertEquals(1, s.getDuplicateCount());
        synchronized (logs) {
            assertTrue(logs.stream().anyMatch(l -> l.contains("reused") && l.contains("MSG00001")), logs.toString());
        }
    }

    @Test
    @Timeout(20)
    public void resendWhileOriginalUndecidedOnAnotherConnection() throws Exception {
        Recorder11 r = new Recorder11();
        java.util.concurrent.BlockingQueue<MLLPServerAckOutEvent> deferred = new java.util.concurrent.LinkedBlockingQueue<>();
        MLLPServer s = track(new MLLPServer());
        s.addMLLPServerEventListener(r);
        s.addMLLPServerEventListener(new DefaultMLLPServerEventListener() {
            @Override
            public void ackOut(MLLPServerAckOutEvent e) {
                e.defer = true;
                deferred.add(e);
            }
        });
        s.config("DuplicateWindow=10");
        s.setLocalHost("127.0.0.1");
        s.startListening();
        byte[] msg = sample("adt_a01.hl7");
        try (Client a = new Client(s.getLocalPort()); Client b = new Client(s.getLocalPort())) {
            a.sendFrame(msg);
            MLLPServerAckOutEvent e = deferred.poll(5, TimeUnit.SECONDS);
            assertNotNull(e, "AckOut never came");
            b.sendFrame(msg);
            assertArrayEquals(new byte[] {SB, NAK, EB, CR}, b.readFrameRaw(), "resend elsewhere while undecided: NAK");
            waitUntil("Error 2032", 5000, () -> r.errors.stream()
                    .anyMatch(x -> x.errorCode == MLLPException.DUPLICATE_IN_PROGRESS));
            s.acknowledge(e.connectionId, e.messageSeq, true);
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, a.readFrameRaw());
            b.sendFrame(msg);   // now a duplicate of the accepted original
            assertArrayEquals(new byte[] {SB, ACK, EB, CR}, b.readFrameRaw());
        }
        waitUntil("Duplicate", 5000, () -> r.duplicates.size() == 1);
        assertEquals(1, r.messages.size());
        assertEquals(1, s.getDuplicateCount());
    }
}
