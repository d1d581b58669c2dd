package mllp;

/** Log: a log line (see the LogLevel setting). */
public class MLLPServerLogEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    /** 1 Info, 2 Verbose, 3 Debug. */
    public int logLevel;
    public String message;
    /** "INFO", "VERBOSE" or "DEBUG". */
    public String logType;

    public MLLPServerLogEvent(Object source) {
        super(source);
    }
}
