package mllp;

/** Error: something went wrong (e.g. 2043: an HL7 ACK whose MSA-2 matches no outstanding message). */
public class MLLPClientErrorEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection number (0 when not connected). */
    public long connectionId;
    /** The error code. */
    public int errorCode;
    public String description;

    public MLLPClientErrorEvent(Object source) {
        super(source);
    }
}
