package mllp;

/** AckIn: a client acknowledged data the server sent. */
public class MLLPServerAckInEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection the acknowledgement arrived on. */
    public String connectionId;
    /** True for ACK, false for NAK (a NAK also fires Error with code 670). */
    public boolean accepted;

    public MLLPServerAckInEvent(Object source) {
        super(source);
    }
}
