package mllp;

/** Connected: the client's connection is open (TLS handshake done, with SSLEnabled), or connecting failed. */
public class MLLPClientConnectedEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The client's connection number: 1 for the first connect, +1 per reconnect. */
    public long connectionId;
    /** 0 when connected, else the error code (10061 refused, 10060 timed out, 2021 TLS ...). */
    public int statusCode;
    public String description;

    public MLLPClientConnectedEvent(Object source) {
        super(source);
    }
}
