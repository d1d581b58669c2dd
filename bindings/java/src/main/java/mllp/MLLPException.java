package mllp;

/**
 * A failed call: {@link #getCode()} is the library's result code (the reference's numbers:
 * 670-672, 1xx-3xx, socket errors 10004-11003; the library's own conditions 2001-2099, e.g.
 * 2004 unknown setting, 2006 reentrant call from an event) and {@link #getMessage()} the
 * library's message for this failure.
 */
public class MLLPException extends Exception {
    private static final long serialVersionUID = 1L;

    // The result codes of include/mllp.h (MLLP_ERR_*), for comparing with getCode().
    public static final int NAK_RECEIVED = 670;
    public static final int INVALID_DATA = 671;
    public static final int INTERRUPTED = 672;
    public static final int CANNOT_CHANGE_LOCAL_PORT = 106;
    public static final int CANNOT_CHANGE_LOCAL_HOST = 107;
    public static final int WOULD_BLOCK = 135;
    public static final int TIMEOUT = 201;
    public static final int BAD_STATE = 211;
    /** Action impossible while not connected. */
    public static final int NOT_CONNECTED = 212;
    /** Action impossible while listening. */
    public static final int LISTENING = 213;
    public static final int CANNOT_OPEN_FILE = 303;
    /** Connection dropped by the remote host. */
    public static final int DROPPED = 1120;
    public static final int INVALID_ARGUMENT = 2001;
    public static final int NO_SUCH_CONNECTION = 2002;
    public static final int NOT_SUPPORTED = 2003;
    public static final int UNKNOWN_SETTING = 2004;
    public static final int INVALID_VALUE = 2005;
    public static final int REENTRANT = 2006;
    public static final int PANIC = 2007;
    public static final int BUFFER_TOO_SMALL = 2008;
    public static final int IO = 2009;
    /** The server has been shut down and has freed its reactor. */
    public static final int SHUT_DOWN = 2010;
    public static final int SEND_INTERRUPTED = 2011;
    public static final int TOO_MANY_CONNECTIONS = 2012;
    /** A connection was closed for the buffered-input budget (MaxBufferedBytes). */
    public static final int MEMORY_BUDGET = 2013;
    public static final int CERTIFICATE = 2020;
    public static final int TLS_HANDSHAKE = 2021;
    public static final int TLS_CLIENT_REJECTED = 2022;
    /** {@link MLLPClient}: the server's certificate was refused (verification or SSLServerAuthentication). */
    public static final int TLS_SERVER_REJECTED = 2023;
    /** A malformed batch (ProcessBatch) was refused whole; reported through the Error event. */
    public static final int BAD_BATCH = 2030;
    /** A message could not be converted to UTF-8 (DecodeToUTF8) and was refused; Error event. */
    public static final int CHARSET = 2031;
    /** A resend arrived while the original was still undecided on another connection (DuplicateWindow); Error event. */
    public static final int DUPLICATE_IN_PROGRESS = 2032;
    /** {@link MLLPClient}: no acknowledgement came within Timeout, after the retries. */
    public static final int ACK_TIMEOUT = 2040;
    /** {@link MLLPClient}: the acknowledgement was MSA-1 AE or CE (its text is the message). */
    public static final int APP_ERROR = 2041;
    /** {@link MLLPClient}: the acknowledgement was MSA-1 AR or CR. */
    public static final int APP_REJECT = 2042;
    /**
     * {@link MLLPClient}: an HL7 acknowledgement whose MSA-2 matches no outstanding message
     * (Error event; the message keeps waiting).
     */
    public static final int ACK_MISMATCH = 2043;
    /**
     * A connection did not start with a valid PROXY protocol header (ProxyProtocol) and was
     * closed; Error event.
     */
    public static final int PROXY_HEADER = 2050;
    /** Socket error: connection refused. */
    public static final int CONNECTION_REFUSED = 10061;
    /** Socket error: connection timed out. */
    public static final int CONNECTION_TIMED_OUT = 10060;
    /** Socket error: host unreachable. */
    public static final int HOST_UNREACHABLE = 10065;

    private final int code;

    public MLLPException(int code, String message) {
        super(message);
        this.code = code;
    }

    public MLLPException(int code, String message, Throwable cause) {
        super(message, cause);
        this.code = code;
    }

    /** The result code. */
    public int getCode() {
        return code;
    }

    @Override
    public String toString() {
        return "MLLPException[" + code + "]: " + getMessage();
    }
}
