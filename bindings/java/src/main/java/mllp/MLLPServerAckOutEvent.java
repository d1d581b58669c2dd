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
    /** Extension: MSH-18 of the message as sent ("" when absent). */
    public String charset;
    /** Extension: the normalised name of the message's character set ("" when unknown). */
    public String encoding;
    /**
     * Read-write extension: null (the default) lets the library build the acknowledgement from
     * {@link #accept} and {@link #rejectCode}. Set it to send exactly these bytes as the
     * acknowledgement instead (framed by the library): in HL7 ack mode an unframed HL7 ACK
     * message, in MLLP mode the one ACK (0x06) or NAK (0x15) byte. With {@link #defer} set, the
     * reply is given later instead, with {@link MLLPServer#acknowledgeWith(String, long, byte[])}.
     */
    public byte[] reply;

    public MLLPServerAckOutEvent(Object source) {
        super(source);
    }
}
