package mllp;

/**
 * SSLConnectionRequest: a TLS ClientHello arrived. A listener may choose the certificate
 * presented on this connection instead of {@link MLLPServer#getSSLCert()}: either set
 * {@link #certificate}, or (as in the reference) the {@link #certStoreType}, {@link #certStore},
 * {@link #certPassword} and {@link #certSubject} fields, from which the binding loads one. The
 * binding keeps the chosen certificate alive until the connection closes.
 */
public class MLLPServerSSLConnectionRequestEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    /** The connection. */
    public String connectionId;
    /** Comma-separated cipher suites the client supports. */
    public String supportedCipherSuites;
    /** Comma-separated signature schemes the client supports. */
    public String supportedSignatureAlgs;
    /** Read-write: the store type of an alternative certificate (default {@link Certificate#cstAuto}). */
    public int certStoreType = Certificate.cstAuto;
    /** Read-write: the store of an alternative certificate (a path, or PEM / base64 data); "" for none. */
    public String certStore = "";
    /** Read-write: the password of {@link #certStore}. */
    public String certPassword = "";
    /** Read-write: selects the certificate in {@link #certStore} ("*" the first). */
    public String certSubject = "*";
    /** Read-write (extension): the certificate to present; takes precedence over the cert* fields. */
    public Certificate certificate;

    public MLLPServerSSLConnectionRequestEvent(Object source) {
        super(source);
    }
}
