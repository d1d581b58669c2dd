package mllp;

/** StartTransfer: a message begins to arrive. */
public class MLLPServerStartTransferEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    /** Extension: sequence number of the message on its connection (1 for the first). */
    public long messageSeq;

    public MLLPServerStartTransferEvent(Object source) {
        super(source);
    }
}
