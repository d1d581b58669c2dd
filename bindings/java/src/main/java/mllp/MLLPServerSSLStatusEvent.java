package mllp;

/** SSLStatus: progress of a secure connection (informational). */
public class MLLPServerSSLStatusEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection. */
    public String connectionId;
    /** The progress message, e.g. "handshake complete: TLS1.3 ...". */
    public String message;

    public MLLPServerSSLStatusEvent(Object source) {
        super(source);
    }
}
