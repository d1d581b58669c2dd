package mllp;

/** EndTransfer: a message has arrived (fires just before Message and AckOut). */
public class MLLPServerEndTransferEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    /** Extension: sequence number of the message on its connection (1 for the first). */
    public long messageSeq;
    /** Extension: MSH-18 of the message as sent ("" when absent or not HL7). */
    public String charset;
    /**
     * Extension: the normalised name of the message's character set ("8859/1", "UNICODE UTF-8",
     * ...; "" when unknown, or when MSH-18 is empty and the DefaultCharset setting is "").
     */
    public String encoding;

    public MLLPServerEndTransferEvent(Object source) {
        super(source);
    }
}
