package mllp;

/**
 * Extension: a server's metrics at one moment ({@link MLLPServer#getMetrics()}), counted since
 * the server was created. {@link MLLPServer#getMetricsText()} gives the same numbers, with
 * errors per code, TLS failures per reason and the latency histogram's buckets, in the
 * Prometheus text format.
 */
public final class MLLPServerMetrics {
    private final Structs.Metrics m;

    MLLPServerMetrics(Structs.Metrics m) {
        this.m = m;
    }

    /** Connections accepted and admitted (Connected fired). */
    public long getConnectionsAccepted() { return m.connections_accepted; }
    /** Connections refused: ConnectionRequest, MaxConnections, PROXY header, TLS handshake. */
    public long getConnectionsRefused() { return m.connections_refused; }
    /** Connections open now. */
    public long getConnectionsOpen() { return m.connections_open; }
    /** Complete messages (frames) received. */
    public long getMessagesReceived() { return m.messages_received; }
    /** Messages answered positively (ACK, AA, CA). */
    public long getMessagesAccepted() { return m.messages_accepted; }
    /** Messages answered negatively (NAK, AE, AR, CE, CR) or refused by the library. */
    public long getMessagesRefused() { return m.messages_refused; }
    /** Messages answered from the duplicate window (DuplicateWindow). */
    public long getMessagesDuplicate() { return m.messages_duplicate; }
    /** Application bytes received (decrypted, for TLS). */
    public long getBytesIn() { return m.bytes_in; }
    /** Application bytes sent. */
    public long getBytesOut() { return m.bytes_out; }
    /** Positive acknowledgements written. */
    public long getAcksSent() { return m.acks_sent; }
    /** Negative acknowledgements written. */
    public long getNaksSent() { return m.naks_sent; }
    /** Error events, all codes. */
    public long getErrors() { return m.errors; }
    /** TLS handshakes completed. */
    public long getTlsHandshakesCompleted() { return m.tls_handshakes_completed; }
    /** TLS handshakes failed. */
    public long getTlsHandshakesFailed() { return m.tls_handshakes_failed; }
    /** Acknowledgements whose latency was measured. */
    public long getAckLatencyCount() { return m.ack_latency_count; }
    /** Sum of those latencies, seconds (end block received to acknowledgement written). */
    public double getAckLatencySumSeconds() { return m.ack_latency_sum_seconds; }
}
