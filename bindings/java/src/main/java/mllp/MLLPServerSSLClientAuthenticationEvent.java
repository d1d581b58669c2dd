package mllp;

/**
 * SSLClientAuthentication: a TLS client presented its certificate (or none: {@link #certEncoded}
 * is empty). Fires when {@link MLLPServer#setSSLAuthenticateClients} is on.
 */
public class MLLPServerSSLClientAuthenticationEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection. */
    public String connectionId;
    /** The client's certificate, DER (empty when it sent none). */
    public byte[] certEncoded;
    /** The certificate's subject DN. */
    public String certSubject;
    /** The certificate's issuer DN. */
    public String certIssuer;
    /** "OK", or why verification against the SSLClientCACerts setting failed. */
    public String status;
    /**
     * Read-write: true keeps the connection, false closes it. Starts as the library's
     * verification result: a recommendation the listener may override either way. A listener
     * that throws leaves the value it had set.
     */
    public boolean accept;

    public MLLPServerSSLClientAuthenticationEvent(Object source) {
        super(source);
    }
}
