package mllp;

/**
 * SendDone: a message's fate is decided: acknowledged (resultCode 0), or failed after its
 * retries (resultCode 670 NAK, 2040 no ACK in time, 2041 AE/CE, 2042 AR/CR, 1120 dropped, a
 * socket error ...). Fires for every message, sent with {@link MLLPClient#send} or
 * {@link MLLPClient#sendAsync}, in the order the messages were queued.
 */
public class MLLPClientSendDoneEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection number the message was last sent on. */
    public long connectionId;
    /** The message's id (unsigned), as returned by {@link MLLPClient#sendAsync}. */
    public long messageId;
    /** The message's MSH-10 ("" if it has none). */
    public String controlId;
    /** 0 = positively acknowledged (or written, with AckMode=None); else the error code. */
    public int resultCode;
    /** "OK" or the reason. */
    public String description;
    /** The kind of the last acknowledgement ({@link AckKind#NONE} if none came). */
    public AckKind ackKind;
    /** 1 + the number of resends. */
    public int attempts;

    public MLLPClientSendDoneEvent(Object source) {
        super(source);
    }

    /** True when the message was positively acknowledged (resultCode 0). */
    public boolean isSuccess() {
        return resultCode == 0;
    }
}
