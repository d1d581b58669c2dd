package mllp;

/** SSLStatus: progress of the client's secure connection (informational). */
public class MLLPClientSSLStatusEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection number. */
    public long connectionId;
    public String message;

    public MLLPClientSSLStatusEvent(Object source) {
        super(source);
    }
}
