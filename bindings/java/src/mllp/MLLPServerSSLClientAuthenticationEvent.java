package mllp;

/** SSLClientAuthentication (reference API; never fired: the C API has no TLS events). */
public class MLLPServerSSLClientAuthenticationEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    public byte[] certEncoded;
    public String certSubject;
    public String certIssuer;
    public String status;
    public boolean accept;

    public MLLPServerSSLClientAuthenticationEvent(Object source) {
        super(source);
    }
}
