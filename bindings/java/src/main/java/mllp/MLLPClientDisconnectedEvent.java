package mllp;

/** Disconnected: the client's connection closed (statusCode 0 when it was closed normally). */
public class MLLPClientDisconnectedEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection number of the connection that closed. */
    public long connectionId;
    public int statusCode;
    public String description;

    public MLLPClientDisconnectedEvent(Object source) {
        super(source);
    }
}
