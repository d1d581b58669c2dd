package mllp;

/** ConnectionRequest: a client asks to connect. */
public class MLLPServerConnectionRequestEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The client's IP address. */
    public String address;
    /** The client's port. */
    public int port;
    /** Read-write: true accepts the connection (the default), false refuses it. */
    public boolean accept;

    public MLLPServerConnectionRequestEvent(Object source) {
        super(source);
    }
}
