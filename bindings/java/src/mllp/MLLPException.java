package mllp;

/**
 * A failed call: {@link #getCode()} is the library's result code (the reference's numbers:
 * 670-672, 1xx-3xx, socket errors 10004-11003; the library's own conditions 2001-2099, e.g.
 * 2004 unknown setting, 2006 reentrant call from an event) and {@link #getMessage()} the
 * library's message for this failure.
 */
public class MLLPException extends Exception {
    private static final long serialVersionUID = 1L;
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
