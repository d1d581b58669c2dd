package mllp;

import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;

import java.lang.ref.Cleaner;
import java.util.Arrays;
import java.util.Base64;

/**
 * A certificate, possibly with its private key (the reference's {@code Certificate} type), used
 * for {@link MLLPServer#setSSLCert} and {@link MLLPServerSSLConnectionRequestEvent#certificate}.
 *
 * <pre>
 * server.setSSLCert(new Certificate(Certificate.cstPFXFile, "server.pfx", "password", "*"));
 * </pre>
 *
 * <p>The read-only fields are read when the certificate is loaded. The native handle is freed by
 * {@link #close()} (idempotent) or, if never closed, when the object becomes unreachable (a
 * {@link Cleaner}). A server keeps its own reference to a certificate it was given, so closing
 * the object afterwards is safe. Instances are immutable and thread-safe.
 */
public class Certificate implements AutoCloseable {
    /** Store type: a PFX (PKCS#12) file; the store is its path. */
    public static final int cstPFXFile = 2;
    /** Store type: PFX (PKCS#12) data (binary or base64). */
    public static final int cstPFXBlob = 3;
    /** Store type: a PEM file with a private key and optional certificates; the store is its path. */
    public static final int cstPEMKeyFile = 6;
    /** Store type: PEM data with a private key and optional certificates. */
    public static final int cstPEMKeyBlob = 7;
    /** Store type: a file with a PEM or DER public certificate; the store is its path. */
    public static final int cstPublicKeyFile = 8;
    /** Store type: PEM or DER public certificate data. */
    public static final int cstPublicKeyBlob = 9;
    /** Store type: detect the format (a path if such a file exists, else data). */
    public static final int cstAuto = 99;

    private static final Cleaner CLEANER = Cleaner.create();

    /** Frees the handle exactly once (close() or the Cleaner). Holds no reference to the Certificate. */
    private static final class Handle implements Runnable {
        private Pointer ptr;

        Handle(Pointer ptr) {
            this.ptr = ptr;
        }

        synchronized Pointer get() {
            return ptr;
        }

        @Override
        public synchronized void run() {
            Pointer p = ptr;
            ptr = null;
            if (p != null) {
                Lib.mllp_certificate_free(p);
            }
        }
    }

    private final Handle handle;
    private final Cleaner.Cleanable cleanable;
    private final int storeType;
    private final String store;
    private final String storePassword;
    private final String subject;
    private final String issuer;
    private final String serialNumber;
    private final String effectiveDate;
    private final String expirationDate;
    private final String thumbprintSHA1;
    private final String thumbprintSHA256;
    private final byte[] encoded;
    private final boolean privateKeyAvailable;

    /**
     * The reference's {@code Certificate(storeType, store, storePassword, subject)} with a text
     * store: a path for the *File store types, or PEM / base64 text for the *Blob types.
     * {@code subject}: "*" (or null) the first certificate, an exact or substring match of the
     * subject DN, or {@code Thumbprint=<hex SHA-1 or SHA-256>}.
     *
     * @throws MLLPException 2020 for a wrong password, bad data or no match; 303 when the file
     *     cannot be opened; 2003 for store types of other platforms (Windows stores, JKS)
     */
    public Certificate(int storeType, String store, String storePassword, String subject) throws MLLPException {
        this(storeType, MLLPServer.utf8(store), store, storePassword, subject);
    }

    /** The same with a binary store (the data of a *Blob store type, e.g. the bytes of a PFX file). */
    public Certificate(int storeType, byte[] store, String storePassword, String subject) throws MLLPException {
        this(storeType, store == null ? new byte[0] : store.clone(), null, storePassword, subject);
    }

    private Certificate(int storeType, byte[] data, String storeText, String storePassword, String subject)
            throws MLLPException {
        this(load(storeType, data, storePassword, subject), storeType, storeText, storePassword);
    }

    private static Pointer load(int storeType, byte[] data, String storePassword, String subject)
            throws MLLPException {
        PointerByReference out = new PointerByReference();
        MLLPServer.check(Lib.mllp_certificate_load(storeType, data.length == 0 ? null : data,
                new SizeT(data.length), Lib.cstr(storePassword), Lib.cstr(subject == null ? "*" : subject), out));
        return out.getValue();
    }

    /** Wraps a handle the library gave us (e.g. from mllp_server_get_ssl_cert); it becomes ours. */
    static Certificate adopt(Pointer p) throws MLLPException {
        return new Certificate(p, cstAuto, null, "");
    }

    /** Takes ownership of p (freed by close() or the Cleaner, also when this constructor fails). */
    private Certificate(Pointer p, int storeType, String storeText, String storePassword) throws MLLPException {
        if (p == null) {
            throw new MLLPException(Lib.ERR_INVALID_ARGUMENT, "no certificate handle");
        }
        this.handle = new Handle(p);
        this.cleanable = CLEANER.register(this, handle);
        this.storeType = storeType;
        this.store = storeText;
        this.storePassword = storePassword == null ? "" : storePassword;
        try {
            this.subject = field(p, Lib.CERT_FIELD_SUBJECT);
            this.issuer = field(p, Lib.CERT_FIELD_ISSUER);
            this.serialNumber = field(p, Lib.CERT_FIELD_SERIAL_NUMBER);
            this.effectiveDate = field(p, Lib.CERT_FIELD_EFFECTIVE_DATE);
            this.expirationDate = field(p, Lib.CERT_FIELD_EXPIRATION_DATE);
            this.thumbprintSHA1 = field(p, Lib.CERT_FIELD_THUMBPRINT_SHA1);
            this.thumbprintSHA256 = field(p, Lib.CERT_FIELD_THUMBPRINT_SHA256);
            this.encoded = MLLPServer.bytes((b, l) -> Lib.mllp_certificate_get_encoded(p, b, l));
            byte[] flag = new byte[1];
            MLLPServer.check(Lib.mllp_certificate_get_private_key_available(p, flag));
            this.privateKeyAvailable = flag[0] != 0;
        } catch (MLLPException | RuntimeException e) {
            cleanable.clean();
            throw e;
        }
    }

    private static String field(Pointer p, int f) throws MLLPException {
        return MLLPServer.string((b, l) -> Lib.mllp_certificate_get_field(p, f, b, l));
    }

    /**
     * Runs f with the native handle, which cannot be freed meanwhile (close() waits).
     * Throws MLLPException 211 once closed.
     */
    <T> T withHandle(MLLPServer.NativeCall<T> f) throws MLLPException {
        synchronized (handle) {
            Pointer p = handle.get();
            if (p == null) {
                throw new MLLPException(Lib.ERR_BAD_STATE, "the certificate is closed");
            }
            return f.apply(p);
        }
    }

    /** Frees the native handle (idempotent). The read-only fields stay readable. */
    @Override
    public void close() {
        cleanable.clean();
    }

    /** True once {@link #close()} has freed the native handle. */
    public boolean isClosed() {
        return handle.get() == null;
    }

    /** StoreType given to the constructor ({@link #cstAuto} for certificates read from a server). */
    public int getStoreType() {
        return storeType;
    }

    /** Store given to the constructor as text (null for a binary store or a certificate read from a server). */
    public String getStore() {
        return store;
    }

    /** StorePassword given to the constructor. */
    public String getStorePassword() {
        return storePassword;
    }

    /** Subject: the subject DN, e.g. "CN=localhost, O=Example". */
    public String getSubject() {
        return subject;
    }

    /** Issuer: the issuer DN. */
    public String getIssuer() {
        return issuer;
    }

    /** SerialNumber, hexadecimal. */
    public String getSerialNumber() {
        return serialNumber;
    }

    /** EffectiveDate (not valid before), e.g. "23-Jan-2000 15:00:00" (UTC). */
    public String getEffectiveDate() {
        return effectiveDate;
    }

    /** ExpirationDate (not valid after), same format. */
    public String getExpirationDate() {
        return expirationDate;
    }

    /** ThumbprintSHA1, lowercase hex. */
    public String getThumbprintSHA1() {
        return thumbprintSHA1;
    }

    /** ThumbprintSHA256, lowercase hex. */
    public String getThumbprintSHA256() {
        return thumbprintSHA256;
    }

    /** Encoded: the certificate, base64 of the DER encoding. */
    public String getEncoded() {
        return Base64.getEncoder().encodeToString(encoded);
    }

    /** EncodedB: the DER encoding (a copy). */
    public byte[] getEncodedB() {
        return encoded.clone();
    }

    /** PrivateKeyAvailable: the store held the certificate's private key. */
    public boolean isPrivateKeyAvailable() {
        return privateKeyAvailable;
    }

    /** Certificates are equal when their DER encodings are. */
    @Override
    public boolean equals(Object o) {
        return o instanceof Certificate && Arrays.equals(((Certificate) o).encoded, encoded);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(encoded);
    }

    @Override
    public String toString() {
        return "Certificate[" + subject + ", SHA-256 " + thumbprintSHA256 + (isClosed() ? ", closed" : "") + "]";
    }
}
