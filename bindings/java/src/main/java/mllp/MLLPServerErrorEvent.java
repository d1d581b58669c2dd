package mllp;

/** Error: something went wrong on a connection (connectionId "0": on the server). */
public class MLLPServerErrorEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    /** The error code (670, 671, 672, socket errors ...). */
    public int errorCode;
    public String description;

    public MLLPServerErrorEvent(Object source) {
        super(source);
    }
}
