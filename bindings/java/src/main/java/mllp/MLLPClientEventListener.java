package mllp;

/**
 * Receives the events of an {@link MLLPClient}; every method does nothing by default, so
 * override only the events you need.
 *
 * <p>Threads: the client has no thread of its own. Events arrive on the thread that calls
 * {@link MLLPClient#connect()}, {@link MLLPClient#send}, {@link MLLPClient#doEvents(int)},
 * {@link MLLPClient#disconnect()} or {@link MLLPClient#close()}, inside that call, with no
 * library lock held. From a listener, {@link MLLPClient#sendAsync}, property reads and writes
 * and {@code config} are allowed; {@code send}, {@code connect}, {@code doEvents} and
 * {@code close} throw {@link MLLPException} 2006 (close: IllegalStateException with that cause).
 *
 * <p>An exception (any Throwable) thrown by a listener never reaches native code: it is
 * reported on {@code System.err}, the remaining listeners still get the event and changes made
 * to {@code accept} are kept.
 */
public interface MLLPClientEventListener extends java.util.EventListener {
    /** The connection is open, or connecting failed (statusCode not 0). */
    default void connected(MLLPClientConnectedEvent e) {}

    /** The connection closed. */
    default void disconnected(MLLPClientDisconnectedEvent e) {}

    /** An acknowledgement arrived. */
    default void ackIn(MLLPClientAckInEvent e) {}

    /** A message was acknowledged or failed after its retries. */
    default void sendDone(MLLPClientSendDoneEvent e) {}

    /** Something went wrong. */
    default void error(MLLPClientErrorEvent e) {}

    /** A log line (LogLevel setting). */
    default void log(MLLPClientLogEvent e) {}

    /** The TLS server presented its certificate; {@code accept} is read-write. */
    default void SSLServerAuthentication(MLLPClientSSLServerAuthenticationEvent e) {}

    /** Progress of the secure connection. */
    default void SSLStatus(MLLPClientSSLStatusEvent e) {}
}
