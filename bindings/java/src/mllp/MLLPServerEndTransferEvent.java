package mllp;

/** EndTransfer: a message has arrived (fires just before AckOut). */
public class MLLPServerEndTransferEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    /** Extension: sequence number of the message on its connection (1 for the first). */
    public long messageSeq;

    public MLLPServerEndTransferEvent(Object source) {
        super(source);
    }
}
