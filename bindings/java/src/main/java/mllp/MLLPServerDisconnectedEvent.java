package mllp;

/** Disconnected: a connection closed. */
public class MLLPServerDisconnectedEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    /** 0 when normal, else the error code. */
    public int statusCode;
    /** "OK" or a description of the code. */
    public String description;

    public MLLPServerDisconnectedEvent(Object source) {
        super(source);
    }
}
