package mllp;

/** SSLConnectionRequest (reference API; never fired: the C API has no TLS events). */
public class MLLPServerSSLConnectionRequestEvent extends java.util.EventObject {
    private static final long serialVersionUID = 1L;

    public String connectionId;
    public String supportedCipherSuites;
    public String supportedSignatureAlgs;
    public int certStoreType;
    public String certStore;
    public String certPassword;
    public String certSubject;

    public MLLPServerSSLConnectionRequestEvent(Object source) {
        super(source);
    }
}
