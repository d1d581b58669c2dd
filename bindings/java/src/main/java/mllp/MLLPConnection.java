package mllp;

import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/**
 * An MLLP client connection (the reference's MLLPConnection type): a live view of one
 * connection of an {@link MLLPServer}, obtained from {@link MLLPServer#getConnections()}.
 * Accessors read and write the library's state; once the connection has closed they throw
 * {@link MLLPException} 2002 (except {@link #isConnected()}, which returns false).
 *
 * <p>String fields (InputData, OutputData) are UTF-8; use the {@code B} variants for bytes.
 */
public class MLLPConnection {
    private final MLLPServer server;
    private final long id;
    private volatile boolean closed;
    volatile InputStream inputStreamRef;
    volatile OutputStream outputStreamRef;

    MLLPConnection(MLLPServer server, long id) {
        this.server = server;
        this.id = id;
    }

    long id() {
        return id;
    }

    void markClosed() {
        closed = true;
    }

    /** The Id of the connection (decimal). */
    public String getConnectionId() {
        return MLLPServer.idString(id);
    }

    /**
     * Extension: the Id as the library's unsigned 64-bit number in a {@code long}
     * ({@code Long.parseUnsignedLong(getConnectionId())}), for the server's {@code long} overloads.
     */
    public long getId() {
        return id;
    }

    /** True while the connection is open. */
    public boolean isConnected() {
        if (closed) {
            return false;
        }
        byte[] out = new byte[1];
        try {
            server.run(h -> Lib.mllp_connection_get_connected(h, id, out));
        } catch (MLLPException e) {
            return false;
        }
        return out[0] != 0;
    }

    /** True while a message is partly received (a start block came, its end block not yet). */
    public boolean isReceiving() {
        byte[] out = new byte[1];
        try {
            server.run(h -> Lib.mllp_connection_get_receiving(h, id, out));
        } catch (MLLPException e) {
            return false;
        }
        return out[0] != 0;
    }

    /** The client's IP address. */
    public String getRemoteHost() throws MLLPException {
        return server.withHandle(h -> MLLPServer.string((b, l) -> Lib.mllp_connection_get_remote_host(h, id, b, l)));
    }

    /** The client's port. */
    public int getRemotePort() throws MLLPException {
        short[] out = new short[1];
        server.run(h -> Lib.mllp_connection_get_remote_port(h, id, out));
        return out[0] & 0xFFFF;
    }

    /** The local interface the connection arrived on. */
    public String getLocalAddress() throws MLLPException {
        return server.withHandle(h -> MLLPServer.string((b, l) -> Lib.mllp_connection_get_local_address(h, id, b, l)));
    }

    /** Seconds a Send waits for the acknowledgement (0 = asynchronous). */
    public int getTimeout() throws MLLPException {
        int[] out = new int[1];
        server.run(h -> Lib.mllp_connection_get_timeout(h, id, out));
        return out[0];
    }

    public void setTimeout(int seconds) throws MLLPException {
        if (seconds < 0) {
            throw new MLLPException(2005, "Timeout cannot be negative");
        }
        server.run(h -> Lib.mllp_connection_set_timeout(h, id, seconds));
    }

    /** InputData as UTF-8 text. */
    public String getInputData() throws MLLPException {
        return new String(getInputDataB(), StandardCharsets.UTF_8);
    }

    public void setInputData(String data) throws MLLPException {
        setInputDataB(MLLPServer.utf8(data));
    }

    /** InputData: the bytes Send sends when no InputStream or InputFileName is set. */
    public byte[] getInputDataB() throws MLLPException {
        return server.withHandle(h -> MLLPServer.bytes((b, l) -> Lib.mllp_connection_get_input_data(h, id, b, l)));
    }

    public void setInputDataB(byte[] data) throws MLLPException {
        byte[] d = data == null ? new byte[0] : data;
        server.run(h -> Lib.mllp_connection_set_input_data(h, id, d.length == 0 ? null : d, new SizeT(d.length)));
    }

    public String getInputFileName() throws MLLPException {
        return server.withHandle(h -> MLLPServer.string((b, l) -> Lib.mllp_connection_get_input_file_name(h, id, b, l)));
    }

    /** Send reads this file ("" or null clears it). */
    public void setInputFileName(String path) throws MLLPException {
        byte[] p = Lib.cstr(path);
        server.run(h -> Lib.mllp_connection_set_input_file_name(h, id, p));
    }

    /** The stream Send reads, or null. Released (and closed, when CloseStreamAfterTransfer is True) by the library. */
    public InputStream getInputStream() {
        return inputStreamRef;
    }

    /**
     * Send reads this stream to its end. With CloseStreamAfterTransfer True (the default) the
     * stream is closed after the Send, when replaced, or when the connection closes; with False
     * it is never closed by the binding. null clears it.
     */
    public void setInputStream(InputStream in) throws MLLPException {
        server.setInputStream(this, in);
    }

    /** OutputData as UTF-8 text. */
    public String getOutputData() throws MLLPException {
        return new String(getOutputDataB(), StandardCharsets.UTF_8);
    }

    /** OutputData: the last message received when no OutputStream or OutputFileName took it. */
    public byte[] getOutputDataB() throws MLLPException {
        return server.withHandle(h -> MLLPServer.bytes((b, l) -> Lib.mllp_connection_get_output_data(h, id, b, l)));
    }

    public String getOutputFileName() throws MLLPException {
        return server.withHandle(h -> MLLPServer.string((b, l) -> Lib.mllp_connection_get_output_file_name(h, id, b, l)));
    }

    /** Each message received is written to this file ("" or null clears it). */
    public void setOutputFileName(String path) throws MLLPException {
        byte[] p = Lib.cstr(path);
        server.run(h -> Lib.mllp_connection_set_output_file_name(h, id, p));
    }

    /** The stream received messages are written to, or null. */
    public OutputStream getOutputStream() {
        return outputStreamRef;
    }

    /**
     * Each message received is written to this stream (on the event thread) instead of
     * OutputData or OutputFileName; closing follows the same rule as {@link #setInputStream}.
     */
    public void setOutputStream(OutputStream out) throws MLLPException {
        server.setOutputStream(this, out);
    }

    /**
     * A negotiated TLS value: {@code name} is SSLNegotiatedCipher, SSLNegotiatedCipherStrength,
     * SSLNegotiatedCipherSuite, SSLNegotiatedKeyExchange, SSLNegotiatedKeyExchangeStrength or
     * SSLNegotiatedVersion; "" before the handshake completes or on a plain connection.
     */
    public String getSSLNegotiated(String name) throws MLLPException {
        byte[] n = Lib.cstr(name);
        return server.withHandle(h -> MLLPServer.string((b, l) -> Lib.mllp_connection_get_ssl_negotiated(h, id, n, b, l)));
    }

    /** SSLNegotiatedVersion: "TLS1.3" or "TLS1.2" ("" on a plain connection). */
    public String getSSLNegotiatedVersion() throws MLLPException {
        return getSSLNegotiated("SSLNegotiatedVersion");
    }

    public String getSSLNegotiatedCipher() throws MLLPException {
        return getSSLNegotiated("SSLNegotiatedCipher");
    }

    public String getSSLNegotiatedCipherStrength() throws MLLPException {
        return getSSLNegotiated("SSLNegotiatedCipherStrength");
    }

    public String getSSLNegotiatedCipherSuite() throws MLLPException {
        return getSSLNegotiated("SSLNegotiatedCipherSuite");
    }

    public String getSSLNegotiatedKeyExchange() throws MLLPException {
        return getSSLNegotiated("SSLNegotiatedKeyExchange");
    }

    public String getSSLNegotiatedKeyExchangeStrength() throws MLLPException {
        return getSSLNegotiated("SSLNegotiatedKeyExchangeStrength");
    }

    /** Extension: {@link MLLPServer#acknowledge(String, long, boolean, int)} for this connection. */
    public void acknowledge(long messageSeq, boolean accept, int rejectCode) throws MLLPException {
        server.acknowledge(getConnectionId(), messageSeq, accept, rejectCode);
    }

    /** Extension: {@link MLLPServer#acknowledgeWith(String, long, byte[])} for this connection. */
    public void acknowledgeWith(long messageSeq, byte[] reply) throws MLLPException {
        server.acknowledgeWith(getConnectionId(), messageSeq, reply);
    }

    /** Extension: {@link MLLPServer#sendAppAck(String, byte[], int, String)} for this connection. */
    public boolean sendAppAck(byte[] message, int code, String text) throws MLLPException {
        return server.sendAppAck(getConnectionId(), message, code, text);
    }

    @Override
    public String toString() {
        return "MLLPConnection[" + getConnectionId() + "]";
    }
}
