package mllp;

/**
 * Extension: Message: a whole received message, in one event (after EndTransfer, before
 * AckOut). With the ProcessBatch setting, fires once per message of a batch.
 */
public class MLLPServerMessageEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    /** Sequence number of the message on its connection (1 for the first). */
    public long messageSeq;
    /** The whole message (a copy): UTF-8 when {@link #decoded}, else the bytes as received. */
    public byte[] data;
    /** MSH-18 as sent ("" when absent). */
    public String charset;
    /** The normalised name of the message's character set ("" when unknown). */
    public String encoding;
    /** True when {@link #data} was converted to UTF-8 (the DecodeToUTF8 setting). */
    public boolean decoded;

    public MLLPServerMessageEvent(Object source) {
        super(source);
    }
}
