using System;
using System.Runtime.InteropServices;
using System.Text;

namespace Mllp
{
    /// <summary>Certificate store types (the reference's CertStoreTypes). The library reads the
    /// file and blob formats below; the Windows and Java stores are accepted by the reference
    /// on other platforms only and fail here with MLLPException 2003.</summary>
    public enum CertStoreTypes
    {
        /// <summary>Windows current-user store: not supported (2003).</summary>
        cstUser = 0,
        /// <summary>Windows machine store: not supported (2003).</summary>
        cstMachine = 1,
        /// <summary>A PFX (PKCS#12) file; the store is its path.</summary>
        cstPFXFile = 2,
        /// <summary>PFX (PKCS#12) data, binary or base64.</summary>
        cstPFXBlob = 3,
        /// <summary>Java key store file: not supported (2003).</summary>
        cstJKSFile = 4,
        /// <summary>Java key store data: not supported (2003).</summary>
        cstJKSBlob = 5,
        /// <summary>A PEM file with a private key and optional certificates; the store is its path.</summary>
        cstPEMKeyFile = 6,
        /// <summary>PEM data with a private key and optional certificates.</summary>
        cstPEMKeyBlob = 7,
        /// <summary>A file with a PEM or DER public certificate; the store is its path.</summary>
        cstPublicKeyFile = 8,
        /// <summary>PEM or DER public certificate data.</summary>
        cstPublicKeyBlob = 9,
        /// <summary>Detect the format (a path if such a file exists, else data).</summary>
        cstAuto = 99,
    }

    /// <summary>The native certificate handle; ReleaseHandle calls mllp_certificate_free once,
    /// when the last user (DangerousAddRef) lets go.</summary>
    internal sealed class CertificateHandle : SafeHandle
    {
        public CertificateHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            Native.mllp_certificate_free(handle);
            return true;
        }
    }

    /// <summary>
    /// A certificate, possibly with its private key (the reference's Certificate type), for
    /// <see cref="MLLPServer.SSLCert"/> and
    /// <see cref="MLLPServerSSLConnectionRequestEventArgs.Certificate"/>.
    /// </summary>
    /// <example><code>
    /// using (var cert = new Certificate(CertStoreTypes.cstPFXFile, "server.pfx", "password", "*"))
    ///     server.SSLCert = cert;   // the server keeps its own reference
    /// </code></example>
    /// <remarks>The read-only fields are read when the certificate is loaded and stay readable
    /// after <see cref="Dispose"/>, which frees the native handle (idempotent; the finalizer
    /// does it otherwise). A server keeps its own reference to a certificate it was given, so
    /// disposing the object afterwards is safe. Instances are immutable and thread-safe.</remarks>
    public sealed class Certificate : IDisposable, IEquatable<Certificate>
    {
        private readonly CertificateHandle _h;
        private readonly byte[] _encoded;

        /// <summary>The reference's Certificate(storeType, store, storePassword, subject) with a
        /// text store: a path for the *File store types, PEM or base64 text for the *Blob types.
        /// <paramref name="subject"/>: "*" (or null) the first certificate, an exact or substring
        /// match of the subject DN, or "Thumbprint=&lt;hex SHA-1 or SHA-256&gt;".</summary>
        /// <exception cref="MLLPException">2020 wrong password, bad data or no match; 303 the
        /// file cannot be opened; 2003 a store type of another platform.</exception>
        public Certificate(CertStoreTypes storeType, string store, string storePassword, string subject)
            : this(Load(storeType, Encoding.UTF8.GetBytes(store ?? string.Empty), storePassword, subject),
                   storeType, store, null, storePassword)
        {
        }

        /// <summary>The same with a binary store: the data of a *Blob store type (e.g. the bytes
        /// of a PFX file), or a path's bytes for a *File type.</summary>
        public Certificate(CertStoreTypes storeType, byte[] store, string storePassword, string subject)
            : this(Load(storeType, store ?? new byte[0], storePassword, subject),
                   storeType, null, store == null ? new byte[0] : (byte[])store.Clone(), storePassword)
        {
        }

        /// <summary>Takes ownership of h (disposed here when reading the fields fails).</summary>
        private Certificate(CertificateHandle h, CertStoreTypes storeType, string store, byte[] storeB, string password)
        {
            _h = h;
            StoreType = storeType;
            Store = store;
            _storeB = storeB;
            StorePassword = password ?? string.Empty;
            try
            {
                Subject = Field(Native.MLLP_CERT_FIELD_SUBJECT);
                Issuer = Field(Native.MLLP_CERT_FIELD_ISSUER);
                SerialNumber = Field(Native.MLLP_CERT_FIELD_SERIAL_NUMBER);
                EffectiveDate = Field(Native.MLLP_CERT_FIELD_EFFECTIVE_DATE);
                ExpirationDate = Field(Native.MLLP_CERT_FIELD_EXPIRATION_DATE);
                ThumbprintSHA1 = Field(Native.MLLP_CERT_FIELD_THUMBPRINT_SHA1);
                ThumbprintSHA256 = Field(Native.MLLP_CERT_FIELD_THUMBPRINT_SHA256);
                _encoded = Native.GetBuffer((byte[] b, ref UIntPtr l) => Native.mllp_certificate_get_encoded(_h, b, ref l));
                byte pk;
                Native.Check(Native.mllp_certificate_get_private_key_available(_h, out pk));
                PrivateKeyAvailable = pk != 0;
            }
            catch
            {
                _h.Dispose();
                throw;
            }
        }

        private static CertificateHandle Load(CertStoreTypes storeType, byte[] data, string password, string subject)
        {
            CertificateHandle h;
            int rc = Native.mllp_certificate_load((int)storeType, data.Length == 0 ? null : data,
                                                  new UIntPtr((uint)data.Length), Native.Utf8z(password ?? string.Empty),
                                                  Native.Utf8z(subject ?? "*"), out h);
            if (rc != Native.MLLP_OK)
            {
                var ex = MLLPException.FromCode(rc);
                if (h != null) h.Dispose();
                throw ex;
            }
            if (h == null || h.IsInvalid)
                throw new MLLPException(MLLPException.InvalidArgument, "mllp_certificate_load returned no handle");
            return h;
        }

        /// <summary>Wraps a handle the library gave us (mllp_server_get_ssl_cert): it becomes ours.</summary>
        internal static Certificate Adopt(CertificateHandle h)
        {
            return new Certificate(h, CertStoreTypes.cstAuto, null, null, string.Empty);
        }

        private string Field(int f)
        {
            return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_certificate_get_field(_h, f, b, ref l));
        }

        internal CertificateHandle Handle { get { return _h; } }

        private readonly byte[] _storeB;

        /// <summary>StoreType given to the constructor (cstAuto for a certificate read from a server).</summary>
        public CertStoreTypes StoreType { get; private set; }
        /// <summary>Store given to the constructor as text (null for a binary store or a
        /// certificate read from a server).</summary>
        public string Store { get; private set; }
        /// <summary>Store given to the constructor as bytes (a copy; null for a text store or a
        /// certificate read from a server).</summary>
        public byte[] StoreB { get { return _storeB == null ? null : (byte[])_storeB.Clone(); } }
        /// <summary>StorePassword given to the constructor.</summary>
        public string StorePassword { get; private set; }
        /// <summary>Subject: the subject DN, e.g. "CN=localhost, O=Example".</summary>
        public string Subject { get; private set; }
        /// <summary>Issuer: the issuer DN.</summary>
        public string Issuer { get; private set; }
        /// <summary>SerialNumber, hexadecimal.</summary>
        public string SerialNumber { get; private set; }
        /// <summary>EffectiveDate (not valid before), e.g. "23-Jan-2000 15:00:00" (UTC).</summary>
        public string EffectiveDate { get; private set; }
        /// <summary>ExpirationDate (not valid after), same format.</summary>
        public string ExpirationDate { get; private set; }
        /// <summary>ThumbprintSHA1, lowercase hex.</summary>
        public string ThumbprintSHA1 { get; private set; }
        /// <summary>ThumbprintSHA256, lowercase hex.</summary>
        public string ThumbprintSHA256 { get; private set; }
        /// <summary>Encoded: the certificate, base64 of its DER encoding.</summary>
        public string Encoded { get { return Convert.ToBase64String(_encoded); } }
        /// <summary>EncodedB: the DER encoding (a copy).</summary>
        public byte[] EncodedB { get { return (byte[])_encoded.Clone(); } }
        /// <summary>PrivateKeyAvailable: the store held the certificate's private key.</summary>
        public bool PrivateKeyAvailable { get; private set; }
        /// <summary>True once <see cref="Dispose"/> has released the native handle.</summary>
        public bool IsDisposed { get { return _h.IsClosed; } }

        /// <summary>Releases the native handle (idempotent). The fields stay readable; using
        /// the certificate for a server afterwards throws ObjectDisposedException.</summary>
        public void Dispose() { _h.Dispose(); }

        /// <summary>Certificates are equal when their DER encodings are.</summary>
        public bool Equals(Certificate other)
        {
            if (ReferenceEquals(other, null)) return false;
            if (ReferenceEquals(other, this)) return true;
            if (other._encoded.Length != _encoded.Length) return false;
            for (int i = 0; i < _encoded.Length; i++)
                if (other._encoded[i] != _encoded[i]) return false;
            return true;
        }

        public override bool Equals(object obj) { return Equals(obj as Certificate); }

        public override int GetHashCode()
        {
            int h = 17;
            foreach (byte b in _encoded) h = unchecked(h * 31 + b);
            return h;
        }

        public override string ToString()
        {
            return "Certificate[" + Subject + ", SHA-256 " + ThumbprintSHA256 + (IsDisposed ? ", disposed" : "") + "]";
        }
    }
}
