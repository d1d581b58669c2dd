package mllp;

/**
 * SSLServerAuthentication: the server presented its certificate during the TLS handshake
 * (SSLEnabled). {@link #accept} starts as the library's verification result (SSLServerCACerts,
 * SSLAcceptServerCertStore or the system roots; SSLServerName); the listener may override it
 * either way. Refusing fails the connect with 2023.
 */
public class MLLPClientSSLServerAuthenticationEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection number. */
    public long connectionId;
    /** The server's certificate, DER (the whole chain concatenated with SSLIncludeCertChain=True). */
    public byte[] certEncoded;
    /** The certificate's subject DN. */
    public String certSubject;
    /** The certificate's issuer DN. */
    public String certIssuer;
    /** "OK", or why verification failed. */
    public String status;
    /** Read-write: true accepts the server's certificate, false refuses it. */
    public boolean accept;

    public MLLPClientSSLServerAuthenticationEvent(Object source) {
        super(source);
    }

    /** Sets {@link #accept}. */
    public void setAccept(boolean accept) {
        this.accept = accept;
    }

    /** {@link #accept}. */
    public boolean isAccept() {
        return accept;
    }
}
