package mllp;

/**
 * Receives the events of an {@link MLLPServer}. Extend {@link DefaultMLLPServerEventListener}
 * to override only the events you need.
 *
 * <p>Threads: by default events arrive on the server's reactor thread (one Java thread per
 * server for its whole life), one at a time, with no library lock held, so a listener may call
 * back into the server (queued operations: {@code send} with Timeout 0, {@code disconnect},
 * {@code config}, property reads). {@code close()} and a synchronous send (Timeout &gt; 0)
 * throw {@link MLLPException} with code 2006 there. With {@code config("EventMode=DoEvents")}
 * events arrive on the thread calling {@link MLLPServer#doEvents()}.
 *
 * <p>An exception (any Throwable) thrown by a listener never reaches native code: it is
 * reported on {@code System.err}, the remaining listeners still get the event, changes already
 * made to read-write fields ({@code accept}, {@code rejectCode}, {@code defer}, {@code reply}, {@code certificate}) are kept, and the server
 * keeps running.
 */
public interface MLLPServerEventListener extends java.util.EventListener {
    void ackIn(MLLPServerAckInEvent e);

    void ackOut(MLLPServerAckOutEvent e);

    void connected(MLLPServerConnectedEvent e);

    void connectionRequest(MLLPServerConnectionRequestEvent e);

    void disconnected(MLLPServerDisconnectedEvent e);

    /**
     * Extension: a message already accepted was received again (DuplicateWindow setting) and
     * answered with the original's acknowledgement; it is not delivered.
     */
    void duplicate(MLLPServerDuplicateEvent e);

    void endTransfer(MLLPServerEndTransferEvent e);

    void error(MLLPServerErrorEvent e);

    void log(MLLPServerLogEvent e);

    /** Extension: a whole message (after endTransfer, before ackOut); once per message of a batch. */
    void message(MLLPServerMessageEvent e);

    /** A TLS client presented its certificate (with SSLAuthenticateClients); {@code accept} is read-write. */
    void SSLClientAuthentication(MLLPServerSSLClientAuthenticationEvent e);

    /** A TLS ClientHello arrived; the certificate presented on the connection may be chosen. */
    void SSLConnectionRequest(MLLPServerSSLConnectionRequestEvent e);

    /** Progress of a secure connection. */
    void SSLStatus(MLLPServerSSLStatusEvent e);

    void startTransfer(MLLPServerStartTransferEvent e);

    void transfer(MLLPServerTransferEvent e);
}
