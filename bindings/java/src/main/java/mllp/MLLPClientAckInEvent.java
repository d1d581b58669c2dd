package mllp;

/** AckIn: an acknowledgement arrived from the server. */
public class MLLPClientAckInEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection number. */
    public long connectionId;
    /** The message it answered (unsigned); 0 when it matched none (late, mismatched, unsolicited). */
    public long messageId;
    /** Its kind (never {@link AckKind#NONE}). */
    public AckKind kind;
    /** MSA-2 ("" for a commit ACK/NAK byte). */
    public String controlId;
    /** MSA-3 and ERR text joined by "; " ("" if none). */
    public String text;
    /** The acknowledgement as received, unframed (a copy). */
    public byte[] data;
    /** True when it answered an outstanding message. */
    public boolean matched;

    public MLLPClientAckInEvent(Object source) {
        super(source);
    }
}
