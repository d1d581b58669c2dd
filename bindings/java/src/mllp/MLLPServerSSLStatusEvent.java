package mllp;

/** SSLStatus (reference API; never fired: the C API has no TLS events). */
public class MLLPServerSSLStatusEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    public String message;

    public MLLPServerSSLStatusEvent(Object source) {
        super(source);
    }
}
