package mllp;

/** Transfer: a piece of a message being received. */
public class MLLPServerTransferEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    /** Bytes of this message delivered so far, including this piece. */
    public long bytesTransferred;
    /** This piece (a copy; HL7 may be in any character set). */
    public byte[] data;

    public MLLPServerTransferEvent(Object source) {
        super(source);
    }
}
