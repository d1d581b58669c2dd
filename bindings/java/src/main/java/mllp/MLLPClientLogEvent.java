package mllp;

/** Log: a log line (see the LogLevel setting). */
public class MLLPClientLogEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection number (0 when not connected). */
    public long connectionId;
    /** 1 Info, 2 Verbose, 3 Debug. */
    public int logLevel;
    public String message;
    /** "INFO", "VERBOSE" or "DEBUG". */
    public String logType;

    public MLLPClientLogEvent(Object source) {
        super(source);
    }
}
