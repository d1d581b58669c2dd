package mllp;

/**
 * The outcome of {@link MLLPClient#send(byte[])}: which message it was, the kind of its last
 * acknowledgement and how many times it was sent. Immutable.
 */
public final class SendResult {
    private final long messageId;
    private final AckKind ackKind;
    private final int attempts;

    SendResult(long messageId, AckKind ackKind, int attempts) {
        this.messageId = messageId;
        this.ackKind = ackKind;
        this.attempts = attempts;
    }

    /** The message's id (unsigned; 1 for the client's first message), as in the SendDone and AckIn events. */
    public long getMessageId() {
        return messageId;
    }

    /** The kind of the last acknowledgement ({@link AckKind#NONE} with AckMode=None). */
    public AckKind getAckKind() {
        return ackKind;
    }

    /** 1 + the number of resends. */
    public int getAttempts() {
        return attempts;
    }

    @Override
    public String toString() {
        return "SendResult[messageId=" + Long.toUnsignedString(messageId) + ", ackKind=" + ackKind
                + ", attempts=" + attempts + "]";
    }
}
