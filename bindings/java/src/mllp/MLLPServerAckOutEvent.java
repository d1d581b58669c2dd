package mllp;

/** AckOut: an acknowledgement is about to be sent for a received message. */
public class MLLPServerAckOutEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection that will receive the acknowledgement. */
    public String connectionId;
    /** Read-write: true sends a positive acknowledgement (the default), false a negative one. */
    public boolean accept;
    /**
     * Read-write: in HL7 ack mode, the MSA-1 code used when {@link #accept} is false:
     * {@link MLLPServer#REJECT_AE} (the default) or {@link MLLPServer#REJECT_AR}.
     */
    public int rejectCode;
    /** Extension: sequence number of the message on its connection (1 for the first). */
    public long messageSeq;
    /** Extension: the complete message being acknowledged (a copy). */
    public byte[] message;
    /**
     * Read-write extension: true leaves the decision open: nothing is sent for this message
     * until {@link MLLPServer#acknowledge(String, long, boolean, int)} is called with
     * {@link #connectionId} and {@link #messageSeq}, from any thread (e.g. after a database
     * commit). Replies still leave in message order.
     */
    public boolean defer;

    public MLLPServerAckOutEvent(Object source) {
        super(source);
    }
}
