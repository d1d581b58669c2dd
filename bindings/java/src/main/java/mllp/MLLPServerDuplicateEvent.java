package mllp;

/**
 * Extension: Duplicate: with the DuplicateWindow setting, a message already accepted was
 * received again. It was not delivered (no StartTransfer/Transfer/EndTransfer/Message/AckOut);
 * the acknowledgement the original got has been sent again byte for byte.
 */
public class MLLPServerDuplicateEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    /** The resent message (a copy). */
    public byte[] message;
    /** Its MSH-10 (message control id). */
    public String controlId;
    /** The acknowledgement sent again (a copy, unframed). */
    public byte[] reply;

    public MLLPServerDuplicateEvent(Object source) {
        super(source);
    }
}
