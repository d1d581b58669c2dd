package mllp;

import com.sun.jna.CallbackThreadInitializer;
import com.sun.jna.Memory;
import com.sun.jna.Native;
import com.sun.jna.Pointer;

import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Lock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * An MLLP (HL7 v2 over TCP) server: the Java binding of libmllp, modelled on the reference's
 * {@code MLLPServer}.
 *
 * <pre>
 * try (MLLPServer server = new MLLPServer()) {
 *     server.addMLLPServerEventListener(new DefaultMLLPServerEventListener() {
 *         public void transfer(MLLPServerTransferEvent e) { ... e.data ... }
 *     });
 *     server.setLocalPort(2575);
 *     server.startListening();
 *     ...
 * }
 * </pre>
 *
 * <p>Every method may be called from any thread, also from listeners (except {@link #close()}
 * and a synchronous {@link #send}, which throw with code 2006 there). Connection ids are the
 * decimal form of the library's unsigned 64-bit ids: every method taking one accepts it as that
 * {@code String} (as events and {@link #getConnections()} give it) or as a {@code long} (the same
 * unsigned value, see {@link MLLPConnection#getId()}). {@link #getConnection} throws
 * {@link java.util.NoSuchElementException} when no open connection has the id (also for a string
 * that is no id); the other methods throw {@link MLLPException} 2002 for an unknown id (2001 for a
 * string that is no id).
 *
 * <p>Lifetime: the native server lives until {@link #close()}. An unclosed server stays
 * reachable (it is registered in a static set) so its callbacks can never be collected while
 * the library may call them; a JVM shutdown hook closes servers still open at exit.
 */
public class MLLPServer implements AutoCloseable {
    /** Version: MLLP version 1. */
    public static final int mvVersion1 = 1;
    /** Version: MLLP version 2 (default). */
    public static final int mvVersion2 = 2;
    /** AckOut rejectCode: MSA-1 AE (application error, the default). */
    public static final int REJECT_AE = 1;
    /** AckOut rejectCode: MSA-1 AR (application reject). */
    public static final int REJECT_AR = 2;
    /** Acknowledgement code for {@link #sendAppAck} and {@link #buildAck}: MSA-1 AA (application accept). */
    public static final int ACK_AA = 0;
    /** Acknowledgement code: MSA-1 AE (application error; same number as {@link #REJECT_AE}). */
    public static final int ACK_AE = 1;
    /** Acknowledgement code: MSA-1 AR (application reject; same number as {@link #REJECT_AR}). */
    public static final int ACK_AR = 2;
    /** Acknowledgement code for {@link #buildAck}: MSA-1 CA (commit accept). */
    public static final int ACK_CA = 3;
    /** Acknowledgement code for {@link #buildAck}: MSA-1 CE (commit error). */
    public static final int ACK_CE = 4;
    /** Acknowledgement code for {@link #buildAck}: MSA-1 CR (commit reject). */
    public static final int ACK_CR = 5;

    /** How long {@link #doEvents()} waits for the first event, in milliseconds. */
    public static final int DEFAULT_DO_EVENTS_WAIT_MS = 100;

    private static final Set<MLLPServer> LIVE = ConcurrentHashMap.newKeySet();
    private static final AtomicInteger SERIAL = new AtomicInteger();

    static {
        Runtime.getRuntime().addShutdownHook(new Thread(MLLPServer::closeAllAtExit, "mllp-shutdown"));
    }

    // ---- native handle and its guard ----
    private volatile Pointer handle;
    private volatile boolean closing;
    private final ReentrantReadWriteLock rw = new ReentrantReadWriteLock();
    private final Object closeLock = new Object();
    /** Depth of this server's event callbacks on the current thread. */
    private final ThreadLocal<int[]> eventDepth = ThreadLocal.withInitial(() -> new int[1]);

    private final CopyOnWriteArrayList<MLLPServerEventListener> listeners = new CopyOnWriteArrayList<>();
    private final ConcurrentHashMap<Long, MLLPConnection> connections = new ConcurrentHashMap<>();
    private final String name;
    private volatile Thread reactorThread;

    // ---- JNA callbacks: strongly referenced by this object for its whole life ----
    private final Lib.ConnectionRequestCb cbConnectionRequest = this::onConnectionRequest;
    private final Lib.StatusCb cbConnected = this::onConnected;
    private final Lib.StatusCb cbDisconnected = this::onDisconnected;
    private final Lib.TransferBoundaryCb cbStartTransfer = this::onStartTransfer;
    private final Lib.TransferCb cbTransfer = this::onTransfer;
    private final Lib.TransferBoundaryCb cbEndTransfer = this::onEndTransfer;
    private final Lib.AckOutCb cbAckOut = this::onAckOut;
    private final Lib.MessageCb cbMessage = this::onMessage;
    private final Lib.DuplicateCb cbDuplicate = this::onDuplicate;
    private final Lib.AckInCb cbAckIn = this::onAckIn;
    private final Lib.ErrorCb cbError = this::onError;
    private final Lib.LogCb cbLog = this::onLog;
    private final Lib.SslClientAuthCb cbSslClientAuth = this::onSslClientAuthentication;
    private final Lib.SslConnectionRequestCb cbSslConnectionRequest = this::onSslConnectionRequest;
    private final Lib.SslStatusCb cbSslStatus = this::onSslStatus;
    /** Certificates chosen in SSLConnectionRequest, kept alive until their connection closes. */
    private final ConcurrentHashMap<Long, Certificate> presented = new ConcurrentHashMap<>();
    private final Lib.ThreadCb cbThreadStart = this::onThreadStart;
    private final Lib.ThreadCb cbThreadStop = this::onThreadStop;

    /** Creates a server with the reference's defaults, not listening. */
    public MLLPServer() {
        name = "mllp-reactor-" + SERIAL.incrementAndGet();
        // The reactor thread is attached to the JVM once (as a daemon, so it never keeps the
        // JVM alive) and stays attached until its thread-stop hook detaches it.
        CallbackThreadInitializer init = new CallbackThreadInitializer(true, false, name);
        for (com.sun.jna.Callback cb : new com.sun.jna.Callback[] {cbConnectionRequest, cbConnected,
                cbDisconnected, cbStartTransfer, cbTransfer, cbEndTransfer, cbAckOut, cbAckIn, cbError,
                cbLog, cbThreadStart, cbThreadStop, cbSslClientAuth, cbSslConnectionRequest, cbSslStatus,
                cbMessage, cbDuplicate}) {
            Native.setCallbackThreadInitializer(cb, init);
        }
        Pointer h = Lib.mllp_server_new();
        if (h == null) {
            throw new OutOfMemoryError("mllp_server_new returned NULL");
        }
        int rc = Lib.mllp_server_on_thread_start(h, cbThreadStart);
        rc |= Lib.mllp_server_on_thread_stop(h, cbThreadStop);
        rc |= Lib.mllp_server_on_connection_request(h, cbConnectionRequest);
        rc |= Lib.mllp_server_on_connected(h, cbConnected);
        rc |= Lib.mllp_server_on_disconnected(h, cbDisconnected);
        // startTransfer, transfer, endTransfer and message are registered only while a listener
        // overrides them (syncMessageCallbacks): they fire for every message.
        rc |= Lib.mllp_server_on_ack_out(h, cbAckOut);
        rc |= Lib.mllp_server_on_duplicate(h, cbDuplicate);
        rc |= Lib.mllp_server_on_ack_in(h, cbAckIn);
        rc |= Lib.mllp_server_on_error(h, cbError);
        rc |= Lib.mllp_server_on_log(h, cbLog);
        rc |= Lib.mllp_server_on_ssl_client_authentication(h, cbSslClientAuth);
        rc |= Lib.mllp_server_on_ssl_connection_request(h, cbSslConnectionRequest);
        rc |= Lib.mllp_server_on_ssl_status(h, cbSslStatus);
        if (rc != 0) {
            Lib.mllp_server_free(h);
            throw new IllegalStateException("registering callbacks failed");
        }
        handle = h;
        LIVE.add(this);
    }

    /** The library's version string, e.g. "0.1.0". */
    public static String libraryVersion() {
        return Lib.mllp_version();
    }

    /**
     * Extension: where libmllp was loaded from: the copy this jar carries, as the {@code jar:}
     * URL of its {@code linux-x86-64/libmllp.so} (JNA unpacks it into a temporary file, removed
     * once loaded), or the file path when the classes are a directory; with
     * {@code -Djna.library.path} set, or no copy in the jar, the file JNA's usual search found.
     */
    public static String libraryPath() {
        return Lib.LIBRARY_SOURCE;
    }

    /** The library's description of a result code. */
    public static String errorDescription(int code) {
        return Lib.str(Lib.mllp_error_description(code));
    }

    // =====================================================================================
    // listeners
    // =====================================================================================

    public void addMLLPServerEventListener(MLLPServerEventListener l) {
        if (l != null) {
            listeners.add(l);
            syncMessageCallbacks();
        }
    }

    public void removeMLLPServerEventListener(MLLPServerEventListener l) {
        if (listeners.remove(l)) {
            syncMessageCallbacks();
        }
    }

    // The startTransfer/transfer/endTransfer/message callbacks registered with the library (under
    // regLock). A JNA callback costs microseconds even when no listener wants the event, so
    // they are registered only while some listener overrides the method (a listener that
    // inherits DefaultMLLPServerEventListener's no-op does not count).
    private final Object regLock = new Object();
    private boolean regStart, regTransfer, regEnd, regMessage;

    private void syncMessageCallbacks() {
        synchronized (regLock) {
            boolean st = false, tr = false, en = false, ms = false;
            for (MLLPServerEventListener l : listeners) {
                st |= overrides(l, "startTransfer", MLLPServerStartTransferEvent.class);
                tr |= overrides(l, "transfer", MLLPServerTransferEvent.class);
                en |= overrides(l, "endTransfer", MLLPServerEndTransferEvent.class);
                ms |= overrides(l, "message", MLLPServerMessageEvent.class);
            }
            final boolean s = st, t = tr, e = en, m = ms;
            try {
                withHandle(h -> {   // takes effect for the next event
                    if (s != regStart) {
                        check(Lib.mllp_server_on_start_transfer(h, s ? cbStartTransfer : null));
                        regStart = s;
                    }
                    if (t != regTransfer) {
                        check(Lib.mllp_server_on_transfer(h, t ? cbTransfer : null));
                        regTransfer = t;
                    }
                    if (e != regEnd) {
                        check(Lib.mllp_server_on_end_transfer(h, e ? cbEndTransfer : null));
                        regEnd = e;
                    }
                    if (m != regMessage) {
                        check(Lib.mllp_server_on_message(h, m ? cbMessage : null));
                        regMessage = m;
                    }
                    return null;
                });
            } catch (MLLPException ignored) {
                // closed: no more events anyway
            }
        }
    }

    private static boolean overrides(MLLPServerEventListener l, String method, Class<?> arg) {
        try {
            return l.getClass().getMethod(method, arg).getDeclaringClass() != DefaultMLLPServerEventListener.class;
        } catch (ReflectiveOperationException | RuntimeException e) {
            return true;   // cannot tell: deliver the event
        }
    }

    // =====================================================================================
    // properties
    // =====================================================================================

    /**
     * Connections: a snapshot map of the open connections, id (decimal string) to connection;
     * {@code get} of an unknown id returns null, as for any map. See also
     * {@link #getConnection(String)} and {@link #getConnectionCount()}.
     */
    public Map<String, MLLPConnection> getConnections() {
        long[] ids;
        try {
            ids = connectionIds();
        } catch (MLLPException e) {
            throw unchecked(e);
        }
        Map<String, MLLPConnection> m = new LinkedHashMap<>();
        for (long id : ids) {
            MLLPConnection c = connection(id);
            m.put(c.getConnectionId(), c);
        }
        return Collections.unmodifiableMap(m);
    }

    /**
     * The open connection with this id (a view; its accessors fail with 2002 once it has closed).
     *
     * @throws java.util.NoSuchElementException when no open connection has this id, also when
     *     {@code connectionId} is not an id at all
     * @throws MLLPException 211 after {@link #close()}
     */
    public MLLPConnection getConnection(String connectionId) throws MLLPException {
        long id;
        try {
            id = parseId(connectionId);
        } catch (MLLPException e) {
            throw new NoSuchElementException("no open connection has id " + connectionId);
        }
        return getConnection(id);
    }

    /** {@link #getConnection(String)} with the id as a (unsigned) long. */
    public MLLPConnection getConnection(long connectionId) throws MLLPException {
        byte[] out = new byte[1];
        int rc = withHandle(h -> Lib.mllp_connection_get_connected(h, connectionId, out));
        if (rc == Lib.ERR_NO_SUCH_CONNECTION) {
            throw new NoSuchElementException("no open connection has id " + idString(connectionId));
        }
        check(rc);
        return connection(connectionId);
    }

    /** ConnectionCount: the number of open connections (the size of {@link #getConnections()}). */
    public int getConnectionCount() {
        Memory n = new Memory(Native.SIZE_T_SIZE);
        getter(h -> Lib.mllp_server_get_connection_count(h, n));
        return (int) Math.min(Lib.getSize(n), Integer.MAX_VALUE);
    }

    public int getDefaultTimeout() {
        int[] out = new int[1];
        getter(h -> Lib.mllp_server_get_default_timeout(h, out));
        return out[0];
    }

    public void setDefaultTimeout(int seconds) throws MLLPException {
        if (seconds < 0) {
            throw new MLLPException(2005, "DefaultTimeout cannot be negative");
        }
        run(h -> Lib.mllp_server_set_default_timeout(h, seconds));
    }

    public boolean isKeepAlive() {
        byte[] out = new byte[1];
        getter(h -> Lib.mllp_server_get_keep_alive(h, out));
        return out[0] != 0;
    }

    public void setKeepAlive(boolean keepAlive) throws MLLPException {
        run(h -> Lib.mllp_server_set_keep_alive(h, (byte) (keepAlive ? 1 : 0)));
    }

    public boolean isListening() {
        byte[] out = new byte[1];
        getter(h -> Lib.mllp_server_get_listening(h, out));
        return out[0] != 0;
    }

    public String getLocalHost() {
        try {
            return withHandle(h -> string((b, l) -> Lib.mllp_server_get_local_host(h, b, l)));
        } catch (MLLPException e) {
            throw unchecked(e);
        }
    }

    public void setLocalHost(String localHost) throws MLLPException {
        byte[] s = Lib.cstr(localHost);
        run(h -> Lib.mllp_server_set_local_host(h, s));
    }

    public int getLocalPort() {
        short[] out = new short[1];
        getter(h -> Lib.mllp_server_get_local_port(h, out));
        return out[0] & 0xFFFF;
    }

    public void setLocalPort(int localPort) throws MLLPException {
        if (localPort < 0 || localPort > 65535) {
            throw new MLLPException(2005, "LocalPort must be 0-65535");
        }
        run(h -> Lib.mllp_server_set_local_port(h, (short) localPort));
    }

    public int getVersion() {
        int[] out = new int[1];
        getter(h -> Lib.mllp_server_get_version(h, out));
        return out[0];
    }

    public void setVersion(int version) throws MLLPException {
        run(h -> Lib.mllp_server_set_version(h, version));
    }

    /** SSLEnabled: accept TLS connections (takes effect at the next StartListening). */
    public boolean isSSLEnabled() {
        byte[] out = new byte[1];
        getter(h -> Lib.mllp_server_get_ssl_enabled(h, out));
        return out[0] != 0;
    }

    public void setSSLEnabled(boolean enabled) throws MLLPException {
        run(h -> Lib.mllp_server_set_ssl_enabled(h, (byte) (enabled ? 1 : 0)));
    }

    /**
     * SSLAuthenticateClients: ask clients for a certificate (see the SSLClientAuthentication
     * event and the SSLClientCACerts setting); takes effect at the next StartListening.
     */
    public boolean isSSLAuthenticateClients() {
        byte[] out = new byte[1];
        getter(h -> Lib.mllp_server_get_ssl_authenticate_clients(h, out));
        return out[0] != 0;
    }

    public void setSSLAuthenticateClients(boolean on) throws MLLPException {
        run(h -> Lib.mllp_server_set_ssl_authenticate_clients(h, (byte) (on ? 1 : 0)));
    }

    /** SSLCert: a new {@link Certificate} for the server's certificate, or null when none is set. */
    public Certificate getSSLCert() {
        try {
            return withHandle(h -> {
                com.sun.jna.ptr.PointerByReference out = new com.sun.jna.ptr.PointerByReference();
                check(Lib.mllp_server_get_ssl_cert(h, out));
                Pointer p = out.getValue();
                return p == null ? null : Certificate.adopt(p);
            });
        } catch (MLLPException e) {
            throw unchecked(e);
        }
    }

    /**
     * Sets SSLCert (null clears it). The server keeps its own reference, so the certificate may
     * be closed afterwards. Checked at the next StartListening (no private key, key mismatch,
     * expired: MLLPException 2020 there). A closed certificate: 211.
     */
    public void setSSLCert(Certificate cert) throws MLLPException {
        if (cert == null) {
            run(h -> Lib.mllp_server_set_ssl_cert(h, null));
            return;
        }
        withHandle(h -> cert.withHandle(c -> {
            check(Lib.mllp_server_set_ssl_cert(h, c));
            return null;
        }));
    }

    // =====================================================================================
    // methods
    // =====================================================================================

    /**
     * Extension: decides a message whose AckOut listener set {@code defer}: {@code accept} sends
     * ACK (HL7 mode: MSA-1 AA), otherwise a NAK (HL7 mode: {@code rejectCode},
     * {@link #REJECT_AE} or {@link #REJECT_AR}). Any thread, also inside listeners. Replies leave
     * in message order; a messageSeq not awaiting a decision is ignored. Code 2002 when the
     * connection has closed.
     */
    public void acknowledge(String connectionId, long messageSeq, boolean accept, int rejectCode)
            throws MLLPException {
        acknowledge(parseId(connectionId), messageSeq, accept, rejectCode);
    }

    /** {@link #acknowledge(String, long, boolean, int)} with the id as a long. */
    public void acknowledge(long connectionId, long messageSeq, boolean accept, int rejectCode)
            throws MLLPException {
        run(h -> Lib.mllp_server_acknowledge(h, connectionId, messageSeq, (byte) (accept ? 1 : 0), rejectCode));
    }

    /** {@link #acknowledge(String, long, boolean, int)} with {@link #REJECT_AE}. */
    public void acknowledge(String connectionId, long messageSeq, boolean accept) throws MLLPException {
        acknowledge(parseId(connectionId), messageSeq, accept, REJECT_AE);
    }

    /** {@link #acknowledge(long, long, boolean, int)} with {@link #REJECT_AE}. */
    public void acknowledge(long connectionId, long messageSeq, boolean accept) throws MLLPException {
        acknowledge(connectionId, messageSeq, accept, REJECT_AE);
    }

    /**
     * Extension: decides a message whose AckOut listener set {@code defer} by sending exactly
     * {@code reply} as its acknowledgement (framed by the library): in HL7 ack mode an unframed
     * HL7 ACK message, in MLLP mode the one ACK (0x06) or NAK (0x15) byte. Same ordering rules
     * as {@link #acknowledge(String, long, boolean, int)}. A positive reply (ACK byte, MSA-1 AA
     * or CA) is remembered by the DuplicateWindow setting.
     */
    public void acknowledgeWith(String connectionId, long messageSeq, byte[] reply) throws MLLPException {
        acknowledgeWith(parseId(connectionId), messageSeq, reply);
    }

    /** {@link #acknowledgeWith(String, long, byte[])} with the id as a long. */
    public void acknowledgeWith(long id, long messageSeq, byte[] reply) throws MLLPException {
        if (reply == null) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "reply is null");
        }
        byte[] r = nonEmpty(reply);
        run(h -> Lib.mllp_server_acknowledge_with(h, id, messageSeq, r, new SizeT(reply.length)));
    }

    /**
     * Extension: sends an HL7 application acknowledgement ({@link #ACK_AA}, {@link #ACK_AE} or
     * {@link #ACK_AR}) for {@code message}, a message received on that connection, as a message
     * of its own built from its MSH, when its MSH-16 asks for one: AL always, ER only when
     * {@code code} is not AA, SU only when it is AA, NE and empty never. {@code text} (may be
     * null) is MSA-3. Returns true when it was sent, false when MSH-16 said no.
     */
    public boolean sendAppAck(String connectionId, byte[] message, int code, String text) throws MLLPException {
        return sendAppAck(parseId(connectionId), message, code, text);
    }

    /** {@link #sendAppAck(String, byte[], int, String)} with the id as a long. */
    public boolean sendAppAck(long id, byte[] message, int code, String text) throws MLLPException {
        if (message == null) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "message is null");
        }
        byte[] m = nonEmpty(message);
        byte[] t = text == null ? null : Lib.cstr(text);
        byte[] sent = new byte[1];
        run(h -> Lib.mllp_server_send_app_ack(h, id, m, new SizeT(message.length), code, t, sent));
        return sent[0] != 0;
    }

    /** {@link #sendAppAck(String, byte[], int, String)} without MSA-3 text. */
    public boolean sendAppAck(String connectionId, byte[] message, int code) throws MLLPException {
        return sendAppAck(parseId(connectionId), message, code, null);
    }

    /** {@link #sendAppAck(long, byte[], int, String)} without MSA-3 text. */
    public boolean sendAppAck(long connectionId, byte[] message, int code) throws MLLPException {
        return sendAppAck(connectionId, message, code, null);
    }

    /**
     * Extension: the server's metrics now (always on; reading takes no lock): connections,
     * messages, bytes, acknowledgements, errors, TLS handshakes, acknowledgement latency.
     */
    public MLLPServerMetrics getMetrics() {
        Structs.Metrics m = new Structs.Metrics();
        getter(h -> Lib.mllp_server_get_metrics(h, m));
        m.read();
        return new MLLPServerMetrics(m);
    }

    /**
     * Extension: the metrics in the Prometheus text exposition format 0.0.4 (for a
     * {@code /metrics} endpoint), with errors per code, TLS failures per reason and the
     * acknowledgement latency histogram.
     */
    public String getMetricsText() {
        try {
            return withHandle(h -> string((b, l) -> Lib.mllp_server_get_metrics_text(h, b, l)));
        } catch (MLLPException e) {
            throw unchecked(e);
        }
    }

    /**
     * Extension: DuplicateCount: how many duplicates (DuplicateWindow setting) have been
     * answered with the original's acknowledgement so far.
     */
    public long getDuplicateCount() {
        long[] out = new long[1];
        getter(h -> Lib.mllp_server_get_duplicate_count(h, out));
        return out[0];
    }

    /**
     * Extension: builds an HL7 ACK for {@code message} (code {@link #ACK_AA} ... {@link #ACK_CR},
     * optional MSA-3 {@code text}), with MSH-7 now and a fresh MSH-10, unique across
     * connections, servers and restarts (every call makes a new one). Unframed.
     */
    public static byte[] buildAck(byte[] message, int code, String text) throws MLLPException {
        if (message == null) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "message is null");
        }
        byte[] m = nonEmpty(message);
        SizeT mlen = new SizeT(message.length);
        byte[] t = text == null ? null : Lib.cstr(text);
        Memory len = new Memory(Native.SIZE_T_SIZE);
        // Each call makes a new control id, so the size asked for first is only a hint: a
        // margin covers a longer id next time, and a too-small buffer is retried.
        long want = 0;
        for (int attempt = 0; attempt < 8; attempt++) {
            byte[] buf = want == 0 ? null : new byte[(int) want];
            Lib.setSize(len, want);
            int rc = Lib.mllp_hl7_build_ack(m, mlen, code, t, buf, len);
            if (rc == Lib.MLLP_OK && buf != null) {
                long got = Lib.getSize(len);
                return got == buf.length ? buf : java.util.Arrays.copyOf(buf, (int) got);
            }
            if (rc != Lib.MLLP_OK && rc != Lib.ERR_BUFFER_TOO_SMALL) {
                throw failure(rc);
            }
            long need = Lib.getSize(len);
            if (need > Integer.MAX_VALUE - 64) {
                throw new MLLPException(Lib.ERR_BUFFER_TOO_SMALL, "value too large for a Java array");
            }
            want = need + 32;
        }
        throw new MLLPException(Lib.ERR_BUFFER_TOO_SMALL, "value kept growing");
    }

    /** {@link #buildAck(byte[], int, String)} without MSA-3 text. */
    public static byte[] buildAck(byte[] message, int code) throws MLLPException {
        return buildAck(message, code, null);
    }

    /** A byte[] JNA passes as a valid pointer even when empty (the length is passed apart). */
    private static byte[] nonEmpty(byte[] b) {
        return b.length == 0 ? new byte[1] : b;
    }

    /**
     * Config: {@code "Name=Value"} sets a setting (returns ""), {@code "Name"} reads one.
     * Unknown name: code 2004; reference setting without meaning here: 2003; bad value: 2005.
     */
    public String config(String configurationString) throws MLLPException {
        if (configurationString == null) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "configurationString is null");
        }
        byte[] s = Lib.cstr(configurationString);
        if (configurationString.indexOf('=') >= 0) {
            run(h -> Lib.mllp_server_config(h, s, null, null));
            return "";
        }
        return withHandle(h -> string((b, l) -> Lib.mllp_server_config(h, s, b, l)));
    }

    public void startListening() throws MLLPException {
        run(Lib::mllp_server_start_listening);
    }

    public void stopListening() throws MLLPException {
        run(Lib::mllp_server_stop_listening);
    }

    /** Shutdown: StopListening, then disconnect every client. The server stays usable. */
    public void shutdown() throws MLLPException {
        run(Lib::mllp_server_shutdown);
    }

    /** Reset: Shutdown, then every property and setting back to its default (listeners stay). */
    public void reset() throws MLLPException {
        run(Lib::mllp_server_reset);
    }

    /** Disconnect: closes the connection (Disconnected fires). 2002 when no open connection has the id. */
    public void disconnect(String connectionId) throws MLLPException {
        disconnect(parseId(connectionId));
    }

    /** {@link #disconnect(String)} with the id as a long. */
    public void disconnect(long connectionId) throws MLLPException {
        run(h -> Lib.mllp_server_disconnect(h, connectionId));
    }

    /** Interrupt: a synchronous Send waiting on this connection fails with 2011 at once. */
    public void interrupt(String connectionId) throws MLLPException {
        interrupt(parseId(connectionId));
    }

    /** {@link #interrupt(String)} with the id as a long. */
    public void interrupt(long connectionId) throws MLLPException {
        run(h -> Lib.mllp_server_interrupt(h, connectionId));
    }

    /**
     * Send: frames and sends the connection's InputStream, else InputFileName, else InputData.
     * With the connection's Timeout 0 returns once queued (135 when the queue is full); with
     * Timeout &gt; 0 waits for the acknowledgement (670 on a NAK, 201 on timeout).
     */
    public void send(String connectionId) throws MLLPException {
        send(parseId(connectionId));
    }

    /** {@link #send(String)} with the id as a long. */
    public void send(long connectionId) throws MLLPException {
        run(h -> Lib.mllp_server_send(h, connectionId));
    }

    /** Extension: sends {@code data} as Send does, without touching the connection's InputData. */
    public void send(String connectionId, byte[] data) throws MLLPException {
        send(parseId(connectionId), data);
    }

    /** {@link #send(String, byte[])} with the id as a long. */
    public void send(long id, byte[] data) throws MLLPException {
        byte[] d = data == null ? new byte[0] : data;
        run(h -> Lib.mllp_server_send_bytes(h, id, d, new SizeT(d.length)));
    }

    /**
     * DoEvents: with {@code config("EventMode=DoEvents")}, delivers queued events on this thread,
     * waiting up to {@link #DEFAULT_DO_EVENTS_WAIT_MS} for the first.
     */
    public void doEvents() throws MLLPException {
        doEvents(DEFAULT_DO_EVENTS_WAIT_MS);
    }

    /** DoEvents waiting up to {@code timeoutMillis} for the first event; returns how many ran. */
    public int doEvents(int timeoutMillis) throws MLLPException {
        if (timeoutMillis < 0) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "timeout cannot be negative");
        }
        return withHandle(h -> {
            Memory n = new Memory(Native.SIZE_T_SIZE);
            Lib.setSize(n, 0);
            check(Lib.mllp_server_do_events(h, timeoutMillis, n));
            return (int) Lib.getSize(n);
        });
    }

    /**
     * Shuts the server down (Disconnected fires for each client), stops its reactor thread and
     * frees the native server. Idempotent. Calls made while it runs, and after, throw
     * MLLPException 211. Throws IllegalStateException (cause: MLLPException 2006) when called
     * from one of this server's events.
     */
    @Override
    public void close() {
        if (inEvent()) {
            throw new IllegalStateException("close() cannot be called from an event of this server",
                    new MLLPException(Lib.ERR_REENTRANT, "close() called from an event of this server"));
        }
        synchronized (closeLock) {
            if (handle == null) {
                return;
            }
            closing = true;
            rw.writeLock().lock();
            try {
                int rc = Lib.mllp_server_free(handle);
                if (rc != Lib.MLLP_OK) {
                    closing = false;
                    throw new IllegalStateException("mllp_server_free failed",
                            new MLLPException(rc, Lib.lastMessage(rc)));
                }
                handle = null;
            } finally {
                rw.writeLock().unlock();
            }
            for (MLLPConnection c : connections.values()) {
                c.markClosed();
            }
            connections.clear();
            LIVE.remove(this);
        }
    }

    /** True once {@link #close()} has freed the native server. */
    public boolean isClosed() {
        return handle == null;
    }

    /** The Java thread events have arrived on (the reactor thread), or null before the first. */
    Thread reactorThread() {
        return reactorThread;
    }

    private static void closeAllAtExit() {
        List<Thread> ts = new ArrayList<>();
        for (MLLPServer s : LIVE) {
            Thread t = new Thread(() -> {
                try {
                    s.close();
                } catch (Throwable ignored) {
                    // best effort at exit
                }
            }, "mllp-close-at-exit");
            t.setDaemon(true);
            t.start();
            ts.add(t);
        }
        long deadline = System.nanoTime() + 3_000_000_000L;
        for (Thread t : ts) {
            long left = (deadline - System.nanoTime()) / 1_000_000L;
            if (left <= 0) {
                break;
            }
            try {
                t.join(left);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
    }

    // =====================================================================================
    // connections (used by MLLPConnection)
    // =====================================================================================

    MLLPConnection connection(long id) {
        return connections.computeIfAbsent(id, k -> new MLLPConnection(this, k));
    }

    long[] connectionIds() throws MLLPException {
        return withHandle(h -> {
            Memory len = new Memory(Native.SIZE_T_SIZE);
            for (int attempt = 0; attempt < 8; attempt++) {
                Lib.setSize(len, 0);
                int rc = Lib.mllp_server_get_connections(h, null, len);
                if (rc == Lib.MLLP_OK) {
                    return new long[0];
                }
                if (rc != Lib.ERR_BUFFER_TOO_SMALL) {
                    throw failure(rc);
                }
                int n = (int) Lib.getSize(len);
                if (n == 0) {
                    return new long[0];
                }
                long[] ids = new long[n];
                rc = Lib.mllp_server_get_connections(h, ids, len);
                if (rc == Lib.MLLP_OK) {
                    return java.util.Arrays.copyOf(ids, (int) Lib.getSize(len));
                }
                if (rc != Lib.ERR_BUFFER_TOO_SMALL) {
                    throw failure(rc);
                }
            }
            throw new MLLPException(Lib.ERR_BUFFER_TOO_SMALL, "connection list kept changing");
        });
    }

    static long parseId(String connectionId) throws MLLPException {
        if (connectionId == null || connectionId.isEmpty()) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "connectionId is empty");
        }
        try {
            return Long.parseUnsignedLong(connectionId.trim());
        } catch (NumberFormatException e) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "invalid connectionId: " + connectionId);
        }
    }

    static String idString(long id) {
        return Long.toUnsignedString(id);
    }

    // ---- streams: tokens handed to the library as the user pointer ----

    private static final AtomicLong STREAM_TOKENS = new AtomicLong();
    private static final ConcurrentHashMap<Long, StreamHolder> STREAMS = new ConcurrentHashMap<>();

    private static final class StreamHolder {
        final MLLPConnection conn;
        final Object stream;
        final boolean closeOnRelease;

        StreamHolder(MLLPConnection conn, Object stream, boolean closeOnRelease) {
            this.conn = conn;
            this.stream = stream;
            this.closeOnRelease = closeOnRelease;
        }
    }

    /** Static, so they can never be collected while the library holds a stream. */
    private static final Lib.ReadCb READ_CB = MLLPServer::onStreamRead;
    private static final Lib.WriteCb WRITE_CB = MLLPServer::onStreamWrite;
    private static final Lib.ReleaseCb CLOSE_CB = MLLPServer::onStreamClose;

    // No CallbackThreadInitializer for these: read runs on the (Java) thread calling Send, write
    // and close on the reactor thread (already attached by the event callbacks) or on a Java
    // thread; anything else gets JNA's default temporary attachment.

    void setInputStream(MLLPConnection conn, InputStream in) throws MLLPException {
        setStream(conn, in, true);
    }

    void setOutputStream(MLLPConnection conn, OutputStream out) throws MLLPException {
        setStream(conn, out, false);
    }

    private void setStream(MLLPConnection conn, Object stream, boolean input) throws MLLPException {
        long id = conn.id();
        withHandle(h -> {
            if (stream == null) {
                check(input ? Lib.mllp_connection_set_input_stream(h, id, null, null, null)
                        : Lib.mllp_connection_set_output_stream(h, id, null, null, null));
                return null;
            }
            boolean closeAfter = parseBool(string((b, l) ->
                    Lib.mllp_server_config(h, Lib.cstr("CloseStreamAfterTransfer"), b, l)));
            long token = STREAM_TOKENS.incrementAndGet();
            STREAMS.put(token, new StreamHolder(conn, stream, closeAfter));
            if (input) {
                conn.inputStreamRef = (InputStream) stream;
            } else {
                conn.outputStreamRef = (OutputStream) stream;
            }
            // The library calls CLOSE_CB exactly once in every case, failures included.
            Pointer user = new Pointer(token);
            check(input ? Lib.mllp_connection_set_input_stream(h, id, READ_CB, CLOSE_CB, user)
                    : Lib.mllp_connection_set_output_stream(h, id, WRITE_CB, CLOSE_CB, user));
            return null;
        });
    }

    private static boolean parseBool(String v) {
        String s = v.trim().toLowerCase(java.util.Locale.ROOT);
        return s.equals("true") || s.equals("1") || s.equals("yes");
    }

    private static PtrDiffT onStreamRead(Pointer user, Pointer buf, SizeT cap) {
        try {
            StreamHolder s = STREAMS.get(Pointer.nativeValue(user));
            if (s == null) {
                return new PtrDiffT(-1);
            }
            int n = (int) Math.min(cap.longValue(), 1 << 16);
            if (n == 0) {
                return new PtrDiffT(0);
            }
            byte[] tmp = new byte[n];
            int r = ((InputStream) s.stream).read(tmp, 0, n);
            if (r <= 0) {
                return new PtrDiffT(0);
            }
            buf.write(0, tmp, 0, r);
            return new PtrDiffT(r);
        } catch (Throwable t) {
            report("InputStream.read", t);
            return new PtrDiffT(-1);
        }
    }

    private static int onStreamWrite(Pointer user, Pointer data, SizeT len) {
        try {
            StreamHolder s = STREAMS.get(Pointer.nativeValue(user));
            if (s == null) {
                return -1;
            }
            OutputStream os = (OutputStream) s.stream;
            os.write(data.getByteArray(0, (int) len.longValue()));
            os.flush();
            return 0;
        } catch (Throwable t) {
            report("OutputStream.write", t);
            return -1;
        }
    }

    private static void onStreamClose(Pointer user) {
        try {
            StreamHolder s = STREAMS.remove(Pointer.nativeValue(user));
            if (s == null) {
                return;
            }
            if (s.conn.inputStreamRef == s.stream) {
                s.conn.inputStreamRef = null;
            }
            if (s.conn.outputStreamRef == s.stream) {
                s.conn.outputStreamRef = null;
            }
            if (s.closeOnRelease) {
                ((java.io.Closeable) s.stream).close();
            }
        } catch (Throwable t) {
            report("stream close", t);
        }
    }

    // =====================================================================================
    // event callbacks (reactor thread, or the doEvents thread)
    // =====================================================================================

    private void onThreadStart(Pointer user) {
        reactorThread = Thread.currentThread();
    }

    private void onThreadStop(Pointer user) {
        // Detach the reactor thread from the JVM when this (its last) callback returns.
        Native.detach(true);
    }

    private interface Body {
        void run() throws Throwable;
    }

    /** Runs an event body: never lets a Throwable reach native code. */
    private void event(Body body) {
        int[] d = eventDepth.get();
        d[0]++;
        try {
            body.run();
        } catch (Throwable t) {
            report("event dispatch", t);
        } finally {
            d[0]--;
        }
    }

    private interface Fire {
        void fire(MLLPServerEventListener l) throws Throwable;
    }

    private void fire(String what, Fire f) {
        for (MLLPServerEventListener l : listeners) {
            try {
                f.fire(l);
            } catch (Throwable t) {
                report("listener " + what, t);
            }
        }
    }

    static void report(String where, Throwable t) {
        try {
            System.err.println("mllp: exception in " + where + " (ignored): " + t);
            t.printStackTrace();
        } catch (Throwable ignored) {
            // nothing left to do
        }
    }

    private boolean inEvent() {
        return eventDepth.get()[0] > 0;
    }

    private void onConnectionRequest(Pointer user, Pointer p) {
        event(() -> {
            Structs.ConnectionRequest s = new Structs.ConnectionRequest(p);
            MLLPServerConnectionRequestEvent e = new MLLPServerConnectionRequestEvent(this);
            e.address = Lib.str(s.address);
            e.port = s.port & 0xFFFF;
            e.accept = s.accept != 0;
            fire("connectionRequest", l -> l.connectionRequest(e));
            byte a = (byte) (e.accept ? 1 : 0);
            if (a != s.accept) {
                s.accept = a;
                s.writeField("accept");
            }
        });
    }

    private void onConnected(Pointer user, Pointer p) {
        event(() -> {
            Structs.Status s = new Structs.Status(p);
            if (s.status_code == 0) {
                connection(s.connection_id);
            }
            MLLPServerConnectedEvent e = new MLLPServerConnectedEvent(this);
            e.connectionId = idString(s.connection_id);
            e.statusCode = s.status_code;
            e.description = Lib.str(s.description);
            fire("connected", l -> l.connected(e));
        });
    }

    private void onDisconnected(Pointer user, Pointer p) {
        event(() -> {
            Structs.Status s = new Structs.Status(p);
            MLLPServerDisconnectedEvent e = new MLLPServerDisconnectedEvent(this);
            e.connectionId = idString(s.connection_id);
            e.statusCode = s.status_code;
            e.description = Lib.str(s.description);
            try {
                fire("disconnected", l -> l.disconnected(e));
            } finally {
                presented.remove(s.connection_id);
                MLLPConnection c = connections.remove(s.connection_id);
                if (c != null) {
                    c.markClosed();
                }
            }
        });
    }

    private void onStartTransfer(Pointer user, Pointer p) {
        event(() -> {
            MLLPServerStartTransferEvent e = new MLLPServerStartTransferEvent(this);
            e.connectionId = idString(p.getLong(Structs.Off.TB_CONNECTION_ID));
            e.messageSeq = p.getLong(Structs.Off.TB_MESSAGE_SEQ);
            e.charset = Structs.Off.string(p, Structs.Off.TB_CHARSET);
            e.encoding = Structs.Off.string(p, Structs.Off.TB_ENCODING);
            fire("startTransfer", l -> l.startTransfer(e));
        });
    }

    private void onTransfer(Pointer user, Pointer p) {
        event(() -> {
            MLLPServerTransferEvent e = new MLLPServerTransferEvent(this);
            e.connectionId = idString(p.getLong(Structs.Off.TR_CONNECTION_ID));
            e.bytesTransferred = p.getLong(Structs.Off.TR_BYTES_TRANSFERRED);
            long n = Structs.Off.size(p, Structs.Off.TR_LEN);
            Pointer data = n == 0 ? null : p.getPointer(Structs.Off.TR_DATA);
            e.data = data == null ? new byte[0] : data.getByteArray(0, (int) n);
            fire("transfer", l -> l.transfer(e));
        });
    }

    private void onEndTransfer(Pointer user, Pointer p) {
        event(() -> {
            MLLPServerEndTransferEvent e = new MLLPServerEndTransferEvent(this);
            e.connectionId = idString(p.getLong(Structs.Off.TB_CONNECTION_ID));
            e.messageSeq = p.getLong(Structs.Off.TB_MESSAGE_SEQ);
            e.charset = Structs.Off.string(p, Structs.Off.TB_CHARSET);
            e.encoding = Structs.Off.string(p, Structs.Off.TB_ENCODING);
            fire("endTransfer", l -> l.endTransfer(e));
        });
    }

    private void onAckOut(Pointer user, Pointer p) {
        event(() -> {
            MLLPServerAckOutEvent e = new MLLPServerAckOutEvent(this);
            e.connectionId = idString(p.getLong(Structs.Off.AO_CONNECTION_ID));
            e.messageSeq = p.getLong(Structs.Off.AO_MESSAGE_SEQ);
            byte accept = p.getByte(Structs.Off.AO_ACCEPT);
            int rejectCode = p.getInt(Structs.Off.AO_REJECT_CODE);
            byte defer = p.getByte(Structs.Off.AO_DEFER);
            e.accept = accept != 0;
            e.rejectCode = rejectCode;
            e.message = Structs.Off.bytes(p, Structs.Off.AO_MESSAGE, Structs.Off.AO_MESSAGE_LEN);
            e.defer = defer != 0;
            e.charset = Structs.Off.string(p, Structs.Off.AO_CHARSET);
            e.encoding = Structs.Off.string(p, Structs.Off.AO_ENCODING);
            try {
                fire("ackOut", l -> l.ackOut(e));
            } finally {
                if (e.reply != null) {
                    // The library copies the reply when this callback returns: the memory must
                    // outlive it, so it is this thread's buffer, reused by the next reply.
                    byte[] r = e.reply;
                    Memory buf = replyBuffer(r.length);
                    if (r.length > 0) {
                        buf.write(0, r, 0, r.length);
                    }
                    p.setPointer(Structs.Off.AO_REPLY, buf);
                    Structs.Off.setSize(p, Structs.Off.AO_REPLY_LEN, r.length);
                }
            }
            byte d = (byte) (e.defer ? 1 : 0);
            if (d != defer) {
                p.setByte(Structs.Off.AO_DEFER, d);
            }
            byte a = (byte) (e.accept ? 1 : 0);
            if (a != accept) {
                p.setByte(Structs.Off.AO_ACCEPT, a);
            }
            if (e.rejectCode != rejectCode) {
                p.setInt(Structs.Off.AO_REJECT_CODE, e.rejectCode);
            }
        });
    }

    /** Per delivering thread: the memory of the last AckOut reply (see onAckOut). */
    private final ThreadLocal<Memory> replyBuffers = new ThreadLocal<>();

    private Memory replyBuffer(int n) {
        Memory m = replyBuffers.get();
        if (m == null || m.size() < Math.max(n, 1)) {
            m = new Memory(Math.max(n, 256));
            replyBuffers.set(m);
        }
        return m;
    }

    private void onMessage(Pointer user, Pointer p) {
        event(() -> {
            MLLPServerMessageEvent e = new MLLPServerMessageEvent(this);
            e.connectionId = idString(p.getLong(Structs.Off.MS_CONNECTION_ID));
            e.messageSeq = p.getLong(Structs.Off.MS_MESSAGE_SEQ);
            e.data = Structs.Off.bytes(p, Structs.Off.MS_DATA, Structs.Off.MS_LEN);
            e.charset = Structs.Off.string(p, Structs.Off.MS_CHARSET);
            e.encoding = Structs.Off.string(p, Structs.Off.MS_ENCODING);
            e.decoded = p.getByte(Structs.Off.MS_DECODED) != 0;
            fire("message", l -> l.message(e));
        });
    }

    private void onDuplicate(Pointer user, Pointer p) {
        event(() -> {
            Structs.Duplicate s = new Structs.Duplicate(p);
            MLLPServerDuplicateEvent e = new MLLPServerDuplicateEvent(this);
            e.connectionId = idString(s.connection_id);
            long n = s.message_len.longValue();
            e.message = n == 0 || s.message == null ? new byte[0] : s.message.getByteArray(0, (int) n);
            e.controlId = nz(Lib.str(s.control_id));
            n = s.reply_len.longValue();
            e.reply = n == 0 || s.reply == null ? new byte[0] : s.reply.getByteArray(0, (int) n);
            fire("duplicate", l -> l.duplicate(e));
        });
    }

    private void onAckIn(Pointer user, Pointer p) {
        event(() -> {
            Structs.AckIn s = new Structs.AckIn(p);
            MLLPServerAckInEvent e = new MLLPServerAckInEvent(this);
            e.connectionId = idString(s.connection_id);
            e.accepted = s.accepted != 0;
            fire("ackIn", l -> l.ackIn(e));
        });
    }

    private void onError(Pointer user, Pointer p) {
        event(() -> {
            Structs.Error s = new Structs.Error(p);
            MLLPServerErrorEvent e = new MLLPServerErrorEvent(this);
            e.connectionId = s.connection_id == 0 ? "" : idString(s.connection_id);
            e.errorCode = s.error_code;
            e.description = Lib.str(s.description);
            fire("error", l -> l.error(e));
        });
    }

    private void onLog(Pointer user, Pointer p) {
        event(() -> {
            Structs.Log s = new Structs.Log(p);
            MLLPServerLogEvent e = new MLLPServerLogEvent(this);
            e.connectionId = s.connection_id == 0 ? "" : idString(s.connection_id);
            e.logLevel = s.log_level;
            e.message = Lib.str(s.message);
            e.logType = Lib.str(s.log_type);
            fire("log", l -> l.log(e));
        });
    }

    private void onSslClientAuthentication(Pointer user, Pointer p) {
        event(() -> {
            Structs.SslClientAuth s = new Structs.SslClientAuth(p);
            MLLPServerSSLClientAuthenticationEvent e = new MLLPServerSSLClientAuthenticationEvent(this);
            e.connectionId = idString(s.connection_id);
            long n = s.cert_encoded_len.longValue();
            e.certEncoded = n == 0 || s.cert_encoded == null ? new byte[0] : s.cert_encoded.getByteArray(0, (int) n);
            e.certSubject = nz(Lib.str(s.cert_subject));
            e.certIssuer = nz(Lib.str(s.cert_issuer));
            e.status = nz(Lib.str(s.status));
            e.accept = s.accept != 0;
            fire("SSLClientAuthentication", l -> l.SSLClientAuthentication(e));
            byte a = (byte) (e.accept ? 1 : 0);
            if (a != s.accept) {
                s.accept = a;
                s.writeField("accept");
            }
        });
    }

    private void onSslConnectionRequest(Pointer user, Pointer p) {
        event(() -> {
            Structs.SslConnectionRequest s = new Structs.SslConnectionRequest(p);
            MLLPServerSSLConnectionRequestEvent e = new MLLPServerSSLConnectionRequestEvent(this);
            e.connectionId = idString(s.connection_id);
            e.supportedCipherSuites = nz(Lib.str(s.supported_cipher_suites));
            e.supportedSignatureAlgs = nz(Lib.str(s.supported_signature_algs));
            fire("SSLConnectionRequest", l -> l.SSLConnectionRequest(e));
            Certificate c = e.certificate;
            if (c == null && e.certStore != null && !e.certStore.isEmpty()) {
                // The reference's way: the binding loads the certificate from the event's fields.
                c = new Certificate(e.certStoreType, e.certStore, e.certPassword, e.certSubject);
            }
            if (c == null) {
                return; // SSLCert is presented
            }
            // The library takes its own reference after this callback returns: until then (and
            // until the connection closes) the certificate must stay reachable.
            presented.put(s.connection_id, c);
            s.certificate = c.withHandle(h -> h);
            s.writeField("certificate");
        });
    }

    private void onSslStatus(Pointer user, Pointer p) {
        event(() -> {
            Structs.SslStatus s = new Structs.SslStatus(p);
            MLLPServerSSLStatusEvent e = new MLLPServerSSLStatusEvent(this);
            e.connectionId = idString(s.connection_id);
            e.message = nz(Lib.str(s.message));
            fire("SSLStatus", l -> l.SSLStatus(e));
        });
    }

    private static String nz(String s) {
        return s == null ? "" : s;
    }

    // =====================================================================================
    // native call plumbing
    // =====================================================================================

    interface NativeCall<T> {
        T apply(Pointer h) throws MLLPException;
    }

    interface IntCall {
        int apply(Pointer h);
    }

    interface BufCall {
        int apply(byte[] buf, Pointer len);
    }

    /**
     * Runs f with the native handle, guarding it against a concurrent close(). Calls made while
     * close() runs (e.g. from a Disconnected listener fired by it) fail at once instead of
     * waiting, so close() can never deadlock with the reactor thread.
     */
    <T> T withHandle(NativeCall<T> f) throws MLLPException {
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
        }
    }

    void run(IntCall f) throws MLLPException {
        withHandle(h -> {
            check(f.apply(h));
            return null;
        });
    }

    private void getter(IntCall f) {
        try {
            run(f);
        } catch (MLLPException e) {
            throw unchecked(e);
        }
    }

    private static RuntimeException unchecked(MLLPException e) {
        return new IllegalStateException(e.getMessage() + " (code " + e.getCode() + ")", e);
    }

    private static MLLPException closed() {
        return new MLLPException(Lib.ERR_BAD_STATE, "the server is closed");
    }

    static void check(int rc) throws MLLPException {
        if (rc != Lib.MLLP_OK) {
            throw failure(rc);
        }
    }

    static MLLPException failure(int rc) {
        return new MLLPException(rc, Lib.lastMessage(rc));
    }

    /** Reads a value under the buffer rule. */
    static byte[] bytes(BufCall f) throws MLLPException {
        Memory len = new Memory(Native.SIZE_T_SIZE);
        Lib.setSize(len, 0);
        int rc = f.apply(null, len);
        for (int attempt = 0; attempt < 8; attempt++) {
            if (rc == Lib.MLLP_OK) {
                return new byte[0];
            }
            if (rc != Lib.ERR_BUFFER_TOO_SMALL) {
                throw failure(rc);
            }
            long n = Lib.getSize(len);
            if (n == 0) {
                return new byte[0];
            }
            if (n > Integer.MAX_VALUE - 8) {
                throw new MLLPException(Lib.ERR_BUFFER_TOO_SMALL, "value too large for a Java array");
            }
            byte[] buf = new byte[(int) n];
            Lib.setSize(len, n);
            rc = f.apply(buf, len);
            if (rc == Lib.MLLP_OK) {
                long got = Lib.getSize(len);
                return got == n ? buf : java.util.Arrays.copyOf(buf, (int) got);
            }
        }
        throw new MLLPException(Lib.ERR_BUFFER_TOO_SMALL, "value kept growing");
    }

    /** Reads a NUL-terminated UTF-8 string under the buffer rule. */
    static String string(BufCall f) throws MLLPException {
        byte[] b = bytes(f);
        int n = b.length;
        while (n > 0 && b[n - 1] == 0) {
            n--;
        }
        return new String(b, 0, n, StandardCharsets.UTF_8);
    }

    static byte[] utf8(String s) {
        return (s == null ? "" : s).getBytes(StandardCharsets.UTF_8);
    }
}
