package mllp;

import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.Lock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * An MLLP (HL7 v2 over TCP) client, the sender: the Java binding of libmllp's
 * {@code mllp_client}. It connects to RemoteHost:RemotePort, frames each message, waits for its
 * acknowledgement (a commit ACK/NAK byte with AckMode=MLLP, the default for Version 2; an HL7
 * ACK whose MSA-2 matches the message's MSH-10 with AckMode=HL7) and resends on a timeout or a
 * negative acknowledgement (MaxRetries, RetryDelay, RetryMaxDelay, RetryOnNegative settings).
 *
 * <pre>
 * try (MLLPClient client = new MLLPClient("127.0.0.1", 2575)) {
 *     SendResult r = client.send(message);          // blocks until ACK (or MLLPException)
 *     System.out.println(r.getAckKind() + " after " + r.getAttempts() + " attempt(s)");
 * }
 * </pre>
 *
 * <p>Threads: the client has no thread of its own. All I/O happens, and every event is
 * delivered, on the thread calling {@link #connect()}, {@link #send}, {@link #doEvents(int)},
 * {@link #disconnect()} or {@link #close()}, inside that call. A message queued with
 * {@link #sendAsync} makes progress only inside {@link #doEvents(int)} (or a later blocking
 * call): call it in a loop until it returns 0. From a listener, {@code sendAsync}, properties and
 * {@code config} may be used; {@code send}, {@code connect} and {@code doEvents} throw
 * {@link MLLPException} 2006 there. The methods may be called from several threads (the
 * library serialises them); {@link #close()} waits for calls in progress.
 *
 * <p>Message ids are unsigned 64-bit numbers ({@link Long#toUnsignedString(long)}), 1 for the
 * client's first message.
 *
 * <p>Lifetime: {@link #close()} disconnects (Disconnected fires) and frees the native client.
 * A client that becomes unreachable without being closed is freed by a {@link Cleaner}, without
 * events.
 */
public class MLLPClient implements AutoCloseable {
    /** Version: MLLP version 1 (no acknowledgements by default: AckMode=None). */
    public static final int mvVersion1 = 1;
    /** Version: MLLP version 2 (default; AckMode=MLLP). */
    public static final int mvVersion2 = 2;
    /** How long {@link #doEvents()} drives I/O at most, in milliseconds. */
    public static final int DEFAULT_DO_EVENTS_WAIT_MS = 100;

    private static final Cleaner CLEANER = Cleaner.create();

    // ---- JNA callbacks: strongly referenced by this object for its whole life ----
    private final Lib.StatusCb cbConnected = this::onConnected;
    private final Lib.StatusCb cbDisconnected = this::onDisconnected;
    private final Lib.ClientAckInCb cbAckIn = this::onAckIn;
    private final Lib.SendDoneCb cbSendDone = this::onSendDone;
    private final Lib.ErrorCb cbError = this::onError;
    private final Lib.LogCb cbLog = this::onLog;
    private final Lib.SslServerAuthCb cbSslServerAuth = this::onSslServerAuthentication;
    private final Lib.SslStatusCb cbSslStatus = this::onSslStatus;

    private final CopyOnWriteArrayList<MLLPClientEventListener> listeners = new CopyOnWriteArrayList<>();
    private final ReentrantReadWriteLock rw = new ReentrantReadWriteLock();
    private final Object closeLock = new Object();
    /** Depth of this client's event callbacks on the current thread. */
    private final ThreadLocal<int[]> eventDepth = ThreadLocal.withInitial(() -> new int[1]);
    private volatile boolean closing;
    private volatile Pointer handle;
    private final Native0 state;
    private final Cleaner.Cleanable cleanable;

    /**
     * The native client, freed exactly once: by {@link #close()} (events still fire), or by the
     * Cleaner when the client was never closed (callbacks removed first: the JNA callback
     * objects are being collected along with the client). Holds no reference to the client.
     */
    private static final class Native0 implements Runnable {
        private Pointer p;
        volatile boolean explicit;

        Native0(Pointer p) {
            this.p = p;
        }

        @Override
        public synchronized void run() {
            Pointer h = p;
            p = null;
            if (h == null) {
                return;
            }
            if (!explicit) {
                Lib.mllp_client_on_connected(h, null);
                Lib.mllp_client_on_disconnected(h, null);
                Lib.mllp_client_on_ack_in(h, null);
                Lib.mllp_client_on_send_done(h, null);
                Lib.mllp_client_on_error(h, null);
                Lib.mllp_client_on_log(h, null);
                Lib.mllp_client_on_ssl_server_authentication(h, null);
                Lib.mllp_client_on_ssl_status(h, null);
            }
            Lib.mllp_client_free(h);
        }
    }

    /** Creates a client with the defaults (RemoteHost "127.0.0.1", RemotePort 0: set it), not connected. */
    public MLLPClient() {
        Pointer h = Lib.mllp_client_new();
        if (h == null) {
            throw new OutOfMemoryError("mllp_client_new returned NULL");
        }
        int rc = Lib.mllp_client_on_connected(h, cbConnected);
        rc |= Lib.mllp_client_on_disconnected(h, cbDisconnected);
        rc |= Lib.mllp_client_on_ack_in(h, cbAckIn);
        rc |= Lib.mllp_client_on_send_done(h, cbSendDone);
        rc |= Lib.mllp_client_on_error(h, cbError);
        rc |= Lib.mllp_client_on_log(h, cbLog);
        rc |= Lib.mllp_client_on_ssl_server_authentication(h, cbSslServerAuth);
        rc |= Lib.mllp_client_on_ssl_status(h, cbSslStatus);
        state = new Native0(h);
        if (rc != 0) {
            state.run();
            throw new IllegalStateException("registering callbacks failed");
        }
        handle = h;
        cleanable = CLEANER.register(this, state);
    }

    /** A client for remoteHost:remotePort (not connected yet: {@link #send} connects when needed). */
    public MLLPClient(String remoteHost, int remotePort) throws MLLPException {
        this();
        try {
            setRemoteHost(remoteHost);
            setRemotePort(remotePort);
        } catch (MLLPException | RuntimeException e) {
            close();
            throw e;
        }
    }

    // =====================================================================================
    // listeners
    // =====================================================================================

    public void addMLLPClientEventListener(MLLPClientEventListener l) {
        if (l != null) {
            listeners.add(l);
        }
    }

    public void removeMLLPClientEventListener(MLLPClientEventListener l) {
        listeners.remove(l);
    }

    // =====================================================================================
    // properties
    // =====================================================================================

    /** RemoteHost: the server's name or IP address (default "127.0.0.1"). */
    public String getRemoteHost() {
        return getString((h, b, l) -> Lib.mllp_client_get_remote_host(h, b, l));
    }

    public void setRemoteHost(String remoteHost) throws MLLPException {
        byte[] s = Lib.cstr(remoteHost);
        run(h -> Lib.mllp_client_set_remote_host(h, s));
    }

    /** RemotePort: the server's TCP port (default 0: must be set before connecting). */
    public int getRemotePort() {
        short[] out = new short[1];
        getter(h -> Lib.mllp_client_get_remote_port(h, out));
        return out[0] & 0xFFFF;
    }

    public void setRemotePort(int remotePort) throws MLLPException {
        if (remotePort < 0 || remotePort > 65535) {
            throw new MLLPException(2005, "RemotePort must be 0-65535");
        }
        run(h -> Lib.mllp_client_set_remote_port(h, (short) remotePort));
    }

    /** LocalHost: the local address connections are made from ("" = any, the default). */
    public String getLocalHost() {
        return getString((h, b, l) -> Lib.mllp_client_get_local_host(h, b, l));
    }

    public void setLocalHost(String localHost) throws MLLPException {
        byte[] s = Lib.cstr(localHost);
        run(h -> Lib.mllp_client_set_local_host(h, s));
    }

    /** Version: {@link #mvVersion1} or {@link #mvVersion2} (default); it sets AckMode's default. */
    public int getVersion() {
        int[] out = new int[1];
        getter(h -> Lib.mllp_client_get_version(h, out));
        return out[0];
    }

    public void setVersion(int version) throws MLLPException {
        run(h -> Lib.mllp_client_set_version(h, version));
    }

    /** Timeout in seconds (default 10): for connecting (TLS handshake included) and for each acknowledgement. */
    public int getTimeout() {
        int[] out = new int[1];
        getter(h -> Lib.mllp_client_get_timeout(h, out));
        return out[0];
    }

    public void setTimeout(int seconds) throws MLLPException {
        if (seconds < 0) {
            throw new MLLPException(2005, "Timeout cannot be negative");
        }
        run(h -> Lib.mllp_client_set_timeout(h, seconds));
    }

    /** KeepAlive: SO_KEEPALIVE on the connection (KeepAliveTime, KeepAliveInterval settings). */
    public boolean isKeepAlive() {
        byte[] out = new byte[1];
        getter(h -> Lib.mllp_client_get_keep_alive(h, out));
        return out[0] != 0;
    }

    public void setKeepAlive(boolean keepAlive) throws MLLPException {
        run(h -> Lib.mllp_client_set_keep_alive(h, (byte) (keepAlive ? 1 : 0)));
    }

    /** Connected: true while the connection is open. */
    public boolean isConnected() {
        byte[] out = new byte[1];
        getter(h -> Lib.mllp_client_get_connected(h, out));
        return out[0] != 0;
    }

    /** SSLEnabled: TLS on the connection (takes effect at the next connect). */
    public boolean isSSLEnabled() {
        byte[] out = new byte[1];
        getter(h -> Lib.mllp_client_get_ssl_enabled(h, out));
        return out[0] != 0;
    }

    public void setSSLEnabled(boolean enabled) throws MLLPException {
        run(h -> Lib.mllp_client_set_ssl_enabled(h, (byte) (enabled ? 1 : 0)));
    }

    /**
     * SSLCert: the client certificate (with its private key) for mutual TLS; null clears it. The
     * client keeps its own reference, so the certificate may be closed afterwards. A closed
     * certificate: 211.
     */
    public void setSSLCert(Certificate cert) throws MLLPException {
        if (cert == null) {
            run(h -> Lib.mllp_client_set_ssl_cert(h, null));
            return;
        }
        withHandle(h -> cert.withHandle(c -> {
            MLLPServer.check(Lib.mllp_client_set_ssl_cert(h, c));
            return null;
        }));
    }

    /** Pending: messages queued or awaiting their acknowledgement. */
    public int getPending() {
        Memory n = new Memory(Native.SIZE_T_SIZE);
        Lib.setSize(n, 0);
        getter(h -> Lib.mllp_client_get_pending(h, n));
        return (int) Math.min(Lib.getSize(n), Integer.MAX_VALUE);
    }

    /**
     * Config: {@code "Name=Value"} sets a setting (returns ""), {@code "Name"} reads one (AckMode,
     * MaxRetries, RetryDelay, RetryMaxDelay, RetryOnNegative, MaxOutstanding, the SSL* settings,
     * PendingCount ...). Unknown name: code 2004; bad value: 2005.
     */
    public String config(String configurationString) throws MLLPException {
        if (configurationString == null) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "configurationString is null");
        }
        byte[] s = Lib.cstr(configurationString);
        if (configurationString.indexOf('=') >= 0) {
            run(h -> Lib.mllp_client_config(h, s, null, null));
            return "";
        }
        return withHandle(h -> MLLPServer.string((b, l) -> Lib.mllp_client_config(h, s, b, l)));
    }

    // =====================================================================================
    // methods
    // =====================================================================================

    /**
     * Connect: opens the connection (and the TLS session with SSLEnabled), waiting up to Timeout;
     * Connected fires. Socket errors: 10061 refused, 10060 timed out, 10065 unreachable; TLS:
     * 2021 handshake, 2023 server certificate refused.
     */
    public void connect() throws MLLPException {
        run(Lib::mllp_client_connect);
    }

    /** Disconnect: closes the connection (Disconnected fires); queued messages stay queued. */
    public void disconnect() throws MLLPException {
        run(Lib::mllp_client_disconnect);
    }

    /**
     * Send: sends {@code data} (one HL7 message, unframed) and waits until it is acknowledged,
     * connecting first when needed. Returns when positively acknowledged (ACK, AA or CA; with
     * AckMode=None once written). Otherwise, after the retries, throws MLLPException: 670 NAK,
     * 2040 no acknowledgement within Timeout, 2041 AE/CE, 2042 AR/CR, 1120 connection lost, a
     * socket error; 2001 for an empty message or one containing the framing bytes. Events
     * (Connected, AckIn, SendDone ...) fire on this thread meanwhile, also for messages queued
     * earlier with {@link #sendAsync}.
     */
    public SendResult send(byte[] data) throws MLLPException {
        if (data == null) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "data is null");
        }
        byte[] d = nonEmpty(data);
        Structs.SendResult r = new Structs.SendResult();
        r.ack_kind = AckKind.NONE.code();
        r.write();
        int rc = withHandle(h -> Lib.mllp_client_send(h, d, new SizeT(data.length), r));
        r.read();
        if (rc != Lib.MLLP_OK) {
            throw MLLPServer.failure(rc);
        }
        return new SendResult(r.message_id, AckKind.fromCode(r.ack_kind), r.attempts);
    }

    /** {@link #send(byte[])} of the message's UTF-8 bytes (segments separated by "\r"). */
    public SendResult send(String message) throws MLLPException {
        return send(utf8(message));
    }

    /**
     * Queues {@code data} and returns its message id at once. The message is sent, and its
     * SendDone event fires, inside later {@link #doEvents(int)} calls (or a blocking call such as
     * {@link #send}), in queue order.
     */
    public long sendAsync(byte[] data) throws MLLPException {
        if (data == null) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "data is null");
        }
        byte[] d = nonEmpty(data);
        long[] id = new long[1];
        run(h -> Lib.mllp_client_send_async(h, d, new SizeT(data.length), id));
        return id[0];
    }

    /** {@link #sendAsync(byte[])} of the message's UTF-8 bytes. */
    public long sendAsync(String message) throws MLLPException {
        return sendAsync(utf8(message));
    }

    /** {@link #doEvents(int)} for up to {@link #DEFAULT_DO_EVENTS_WAIT_MS}. */
    public int doEvents() throws MLLPException {
        return doEvents(DEFAULT_DO_EVENTS_WAIT_MS);
    }

    /**
     * DoEvents: drives I/O and delivers events on this thread until nothing is queued or in
     * flight, or {@code timeoutMillis} have passed. Returns the number of messages still queued
     * or awaiting their acknowledgement (0: all done).
     */
    public int doEvents(int timeoutMillis) throws MLLPException {
        if (timeoutMillis < 0) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "timeout cannot be negative");
        }
        Memory n = new Memory(Native.SIZE_T_SIZE);
        Lib.setSize(n, 0);
        run(h -> Lib.mllp_client_do_events(h, timeoutMillis, n));
        return (int) Math.min(Lib.getSize(n), Integer.MAX_VALUE);
    }

    /**
     * Disconnects (Disconnected fires when connected), ends every message not finished
     * (sendDone with result code 672, on this thread) and frees the native client. Idempotent;
     * calls made after it throw MLLPException 211. Throws IllegalStateException (cause:
     * MLLPException 2006) when called from one of this client's events.
     */
    @Override
    public void close() {
        if (inEvent()) {
            throw new IllegalStateException("close() cannot be called from an event of this client",
                    new MLLPException(Lib.ERR_REENTRANT, "close() called from an event of this client"));
        }
        synchronized (closeLock) {
            Pointer h = handle;
            if (h == null) {
                return;
            }
            closing = true;
            rw.writeLock().lock();
            try {
                byte[] c = new byte[1];
                if (Lib.mllp_client_get_connected(h, c) == Lib.MLLP_OK && c[0] != 0) {
                    Lib.mllp_client_disconnect(h);   // Disconnected fires on this thread
                }
                handle = null;
                state.explicit = true;
                cleanable.clean();
            } finally {
                rw.writeLock().unlock();
                Reference.reachabilityFence(this);
            }
        }
    }

    /** True once {@link #close()} has freed the native client. */
    public boolean isClosed() {
        return handle == null;
    }

    // =====================================================================================
    // event callbacks (on the thread inside a call of this client)
    // =====================================================================================

    private interface Body {
        void run() throws Throwable;
    }

    private void event(Body body) {
        int[] d = eventDepth.get();
        d[0]++;
        try {
            body.run();
        } catch (Throwable t) {
            MLLPServer.report("client event dispatch", t);
        } finally {
            d[0]--;
        }
    }

    private interface Fire {
        void fire(MLLPClientEventListener l) throws Throwable;
    }

    private void fire(String what, Fire f) {
        for (MLLPClientEventListener l : listeners) {
            try {
                f.fire(l);
            } catch (Throwable t) {
                MLLPServer.report("client listener " + what, t);
            }
        }
    }

    private boolean inEvent() {
        return eventDepth.get()[0] > 0;
    }

    private void onConnected(Pointer user, Pointer p) {
        event(() -> {
            if (listeners.isEmpty()) {
                return;
            }
            Structs.Status s = new Structs.Status(p);
            MLLPClientConnectedEvent e = new MLLPClientConnectedEvent(this);
            e.connectionId = s.connection_id;
            e.statusCode = s.status_code;
            e.description = nz(Lib.str(s.description));
            fire("connected", l -> l.connected(e));
        });
    }

    private void onDisconnected(Pointer user, Pointer p) {
        event(() -> {
            if (listeners.isEmpty()) {
                return;
            }
            Structs.Status s = new Structs.Status(p);
            MLLPClientDisconnectedEvent e = new MLLPClientDisconnectedEvent(this);
            e.connectionId = s.connection_id;
            e.statusCode = s.status_code;
            e.description = nz(Lib.str(s.description));
            fire("disconnected", l -> l.disconnected(e));
        });
    }

    private void onAckIn(Pointer user, Pointer p) {
        event(() -> {
            if (listeners.isEmpty()) {
                return;
            }
            Structs.ClientAckIn s = new Structs.ClientAckIn(p);
            MLLPClientAckInEvent e = new MLLPClientAckInEvent(this);
            e.connectionId = s.connection_id;
            e.messageId = s.message_id;
            e.kind = AckKind.fromCode(s.kind);
            e.controlId = nz(Lib.str(s.control_id));
            e.text = nz(Lib.str(s.text));
            long n = s.len == null ? 0 : s.len.longValue();
            e.data = n == 0 || s.data == null ? new byte[0] : s.data.getByteArray(0, (int) n);
            e.matched = s.matched != 0;
            fire("ackIn", l -> l.ackIn(e));
        });
    }

    private void onSendDone(Pointer user, Pointer p) {
        event(() -> {
            if (listeners.isEmpty()) {
                return;
            }
            Structs.SendDone s = new Structs.SendDone(p);
            MLLPClientSendDoneEvent e = new MLLPClientSendDoneEvent(this);
            e.connectionId = s.connection_id;
            e.messageId = s.message_id;
            e.controlId = nz(Lib.str(s.control_id));
            e.resultCode = s.result_code;
            e.description = nz(Lib.str(s.description));
            e.ackKind = AckKind.fromCode(s.ack_kind);
            e.attempts = s.attempts;
            fire("sendDone", l -> l.sendDone(e));
        });
    }

    private void onError(Pointer user, Pointer p) {
        event(() -> {
            if (listeners.isEmpty()) {
                return;
            }
            Structs.Error s = new Structs.Error(p);
            MLLPClientErrorEvent e = new MLLPClientErrorEvent(this);
            e.connectionId = s.connection_id;
            e.errorCode = s.error_code;
            e.description = nz(Lib.str(s.description));
            fire("error", l -> l.error(e));
        });
    }

    private void onLog(Pointer user, Pointer p) {
        event(() -> {
            if (listeners.isEmpty()) {
                return;
            }
            Structs.Log s = new Structs.Log(p);
            MLLPClientLogEvent e = new MLLPClientLogEvent(this);
            e.connectionId = s.connection_id;
            e.logLevel = s.log_level;
            e.message = nz(Lib.str(s.message));
            e.logType = nz(Lib.str(s.log_type));
            fire("log", l -> l.log(e));
        });
    }

    private void onSslServerAuthentication(Pointer user, Pointer p) {
        event(() -> {
            if (listeners.isEmpty()) {
                return;
            }
            Structs.SslServerAuth s = new Structs.SslServerAuth(p);
            MLLPClientSSLServerAuthenticationEvent e = new MLLPClientSSLServerAuthenticationEvent(this);
            e.connectionId = s.connection_id;
            long n = s.cert_encoded_len == null ? 0 : s.cert_encoded_len.longValue();
            e.certEncoded = n == 0 || s.cert_encoded == null ? new byte[0] : s.cert_encoded.getByteArray(0, (int) n);
            e.certSubject = nz(Lib.str(s.cert_subject));
            e.certIssuer = nz(Lib.str(s.cert_issuer));
            e.status = nz(Lib.str(s.status));
            e.accept = s.accept != 0;
            try {
                fire("SSLServerAuthentication", l -> l.SSLServerAuthentication(e));
            } finally {
                byte a = (byte) (e.accept ? 1 : 0);
                if (a != s.accept) {
                    s.accept = a;
                    s.writeField("accept");
                }
            }
        });
    }

    private void onSslStatus(Pointer user, Pointer p) {
        event(() -> {
            if (listeners.isEmpty()) {
                return;
            }
            Structs.SslStatus s = new Structs.SslStatus(p);
            MLLPClientSSLStatusEvent e = new MLLPClientSSLStatusEvent(this);
            e.connectionId = s.connection_id;
            e.message = nz(Lib.str(s.message));
            fire("SSLStatus", l -> l.SSLStatus(e));
        });
    }

    // =====================================================================================
    // native call plumbing
    // =====================================================================================

    private interface StrCall {
        int apply(Pointer h, byte[] buf, Pointer len);
    }

    /**
     * Runs f with the native handle, guarding it against a concurrent close(); the client (and
     * so its JNA callbacks) stays reachable until the call returns.
     */
    private <T> T withHandle(MLLPServer.NativeCall<T> f) throws MLLPException {
        if (closing) {
            throw closed();
        }
        Lock r = rw.readLock();
        if (!r.tryLock()) {
            if (inEvent() || closing) {
                throw closed();
            }
            r.lock();
        }
        try {
            Pointer h = handle;
            if (h == null) {
                throw closed();
            }
            return f.apply(h);
        } finally {
            r.unlock();
            Reference.reachabilityFence(this);
        }
    }

    private void run(MLLPServer.IntCall f) throws MLLPException {
        int rc = withHandle(f::apply);
        if (rc != Lib.MLLP_OK) {
            throw MLLPServer.failure(rc);
        }
    }

    private void getter(MLLPServer.IntCall f) {
        try {
            run(f);
        } catch (MLLPException e) {
            throw unchecked(e);
        }
    }

    private String getString(StrCall f) {
        try {
            return withHandle(h -> MLLPServer.string((b, l) -> f.apply(h, b, l)));
        } catch (MLLPException e) {
            throw unchecked(e);
        }
    }

    private static RuntimeException unchecked(MLLPException e) {
        return new IllegalStateException(e.getMessage() + " (code " + e.getCode() + ")", e);
    }

    private static MLLPException closed() {
        return new MLLPException(Lib.ERR_BAD_STATE, "the client is closed");
    }

    /** A byte[] JNA passes as a valid pointer even when empty (the length is passed apart). */
    private static byte[] nonEmpty(byte[] b) {
        return b.length == 0 ? new byte[1] : b;
    }

    private static byte[] utf8(String s) throws MLLPException {
        if (s == null) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "message is null");
        }
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static String nz(String s) {
        return s == null ? "" : s;
    }
}
