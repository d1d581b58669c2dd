package mllp;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/** Helpers for the tests: an MLLP client over java.net.Socket, an event recorder. */
final class TestSupport {
    static final byte SB = 0x0B, EB = 0x1C, CR = 0x0D, ACK = 0x06, NAK = 0x15;

    private TestSupport() {}

    static Path samples() {
        return Paths.get(System.getProperty("mllp.samples", "../../tests/data"));
    }

    static byte[] sample(String name) throws IOException {
        return Files.readAllBytes(samples().resolve(name));
    }

    static byte[] frame(byte[] payload) {
        byte[] f = new byte[payload.length + 3];
        f[0] = SB;
        System.arraycopy(payload, 0, f, 1, payload.length);
        f[f.length - 2] = EB;
        f[f.length - 1] = CR;
        return f;
    }

    /** A small blocking MLLP client. */
    static final class Client implements AutoCloseable {
        final Socket socket;
        final InputStream in;
        final OutputStream out;

        Client(int port) throws IOException {
            socket = new Socket();
            socket.connect(new InetSocketAddress("127.0.0.1", port), 5000);
            socket.setSoTimeout(5000);
            in = new java.io.BufferedInputStream(socket.getInputStream());
            out = socket.getOutputStream();
        }

        void sendFrame(byte[] payload) throws IOException {
            out.write(frame(payload));
            out.flush();
        }

        /** Reads one whole frame (SB ... EB CR) and returns its bytes including the framing. */
        byte[] readFrameRaw() throws IOException {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            int prev = -1;
            while (true) {
                int c = in.read();
                if (c < 0) {
                    throw new IOException("EOF after " + b.size() + " bytes");
                }
                b.write(c);
                if (prev == (EB & 0xFF) && c == CR) {
                    return b.toByteArray();
                }
                prev = c;
            }
        }

        /** The payload of the next frame (between SB and EB). */
        byte[] readFrame() throws IOException {
            byte[] raw = readFrameRaw();
            int start = 0;
            while (start < raw.length && raw[start] != SB) {
                start++;
            }
            return java.util.Arrays.copyOfRange(raw, start + 1, raw.length - 2);
        }

        /** True when the server closed the connection (EOF or reset) within the timeout. */
        boolean closedByPeer() throws IOException {
            try {
                while (true) {
                    int c = in.read();
                    if (c < 0) {
                        return true;
                    }
                }
            } catch (SocketTimeoutException e) {
                return false;
            } catch (IOException e) {
                return true; // connection reset
            }
        }

        @Override
        public void close() throws IOException {
            socket.close();
        }
    }

    /** Records every event as a string and keeps the objects for inspection. */
    static class Recorder extends DefaultMLLPServerEventListener {
        final BlockingQueue<Object> events = new LinkedBlockingQueue<>();
        final java.util.List<Thread> threads = java.util.Collections.synchronizedList(new java.util.ArrayList<>());

        private void add(Object e) {
            threads.add(Thread.currentThread());
            events.add(e);
        }

        @SuppressWarnings("unchecked")
        <T> T next(Class<T> type, long millis) throws InterruptedException {
            long deadline = System.currentTimeMillis() + millis;
            while (true) {
                long left = deadline - System.currentTimeMillis();
                Object o = events.poll(Math.max(left, 0), TimeUnit.MILLISECONDS);
                if (o == null) {
                    throw new AssertionError("timed out waiting for " + type.getSimpleName());
                }
                if (type.isInstance(o)) {
                    return (T) o;
                }
            }
        }

        public void ackIn(MLLPServerAckInEvent e) { add(e); }
        public void ackOut(MLLPServerAckOutEvent e) { add(e); }
        public void connected(MLLPServerConnectedEvent e) { add(e); }
        public void connectionRequest(MLLPServerConnectionRequestEvent e) { add(e); }
        public void disconnected(MLLPServerDisconnectedEvent e) { add(e); }
        public void endTransfer(MLLPServerEndTransferEvent e) { add(e); }
        public void error(MLLPServerErrorEvent e) { add(e); }
        public void startTransfer(MLLPServerStartTransferEvent e) { add(e); }
        public void transfer(MLLPServerTransferEvent e) { add(e); }
    }

    /** A server listening on 127.0.0.1 and an ephemeral port. */
    static MLLPServer listening(MLLPServerEventListener... ls) throws MLLPException {
        MLLPServer s = new MLLPServer();
        for (MLLPServerEventListener l : ls) {
            s.addMLLPServerEventListener(l);
        }
        s.setLocalHost("127.0.0.1");
        s.setLocalPort(0);
        s.startListening();
        return s;
    }

    static void waitUntil(String what, long millis, java.util.function.BooleanSupplier cond) throws InterruptedException {
        long deadline = System.currentTimeMillis() + millis;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                throw new AssertionError("timed out waiting until " + what);
            }
            Thread.sleep(10);
        }
    }
}
