using System;

namespace Mllp
{
    /// <summary>
    /// A failed library call. <see cref="Code"/> is the library's result code: the reference's
    /// numbers where it has one (670 NAK received, 671 invalid data or timeout, 672 interrupted,
    /// 106/107 cannot change LocalPort/LocalHost while listening, 201 timeout, socket errors
    /// 100xx ...), and 2001-2099 for the library's own conditions (2002 no such connection,
    /// 2004 unknown setting, 2005 invalid value, 2006 re-entrant call, 2020 certificate,
    /// 2021 TLS handshake, 2022 client certificate refused, 2023 server certificate refused,
    /// 2030 bad batch, 2031 charset, 2032 duplicate in progress, 2040 no acknowledgement in time,
    /// 2041 AE/CE, 2042 AR/CR, 2043 acknowledgement for another message ...).
    /// The message is the library's (mllp_last_error_message) for the failed call.
    /// </summary>
    [Serializable]
    public class MLLPException : Exception
    {
        public const int NakReceived = 670;
        public const int InvalidData = 671;
        public const int Interrupted = 672;
        public const int CannotChangeLocalPort = 106;
        public const int CannotChangeLocalHost = 107;
        public const int WouldBlock = 135;
        public const int Timeout = 201;
        public const int BadState = 211;
        /// <summary>Action impossible while not connected.</summary>
        public const int NotConnected = 212;
        /// <summary>Action impossible while listening.</summary>
        public const int Listening = 213;
        public const int CannotOpenFile = 303;
        /// <summary>Connection dropped by the remote host.</summary>
        public const int Dropped = 1120;
        public const int InvalidArgument = 2001;
        public const int NoSuchConnection = 2002;
        public const int NotSupported = 2003;
        public const int UnknownSetting = 2004;
        public const int InvalidValue = 2005;
        public const int Reentrant = 2006;
        public const int Panic = 2007;
        public const int BufferTooSmall = 2008;
        public const int Io = 2009;
        /// <summary>The server has been shut down and has freed its reactor.</summary>
        public const int ShutDown = 2010;
        public const int SendInterrupted = 2011;
        public const int TooManyConnections = 2012;
        /// <summary>A connection was closed because the server-wide budget for buffered input
        /// (MaxBufferedBytes) was spent and it held the most partial-message data.</summary>
        public const int MemoryBudget = 2013;
        /// <summary>A certificate or key could not be loaded or used (wrong password, key
        /// mismatch, expired, no private key, bad format).</summary>
        public const int CertificateError = 2020;
        /// <summary>The TLS handshake failed or did not finish in time.</summary>
        public const int TlsHandshake = 2021;
        /// <summary>The client's certificate was refused in SSLClientAuthentication.</summary>
        public const int TlsClientRejected = 2022;
        /// <summary><see cref="MLLPClient"/>: the server's certificate was refused (verification
        /// or the SSLServerAuthentication event).</summary>
        public const int TlsServerRejected = 2023;
        /// <summary>A malformed batch (ProcessBatch setting) was refused whole; reported through
        /// the Error event.</summary>
        public const int BadBatch = 2030;
        /// <summary>A message could not be converted to UTF-8 (DecodeToUTF8 setting) and was
        /// refused; reported through the Error event.</summary>
        public const int Charset = 2031;
        /// <summary>A resend arrived while the original was still undecided on another
        /// connection (DuplicateWindow setting); reported through the Error event.</summary>
        public const int DuplicateInProgress = 2032;
        /// <summary><see cref="MLLPClient"/>: no acknowledgement within Timeout, after the retries.</summary>
        public const int AckTimeout = 2040;
        /// <summary><see cref="MLLPClient"/>: the acknowledgement was MSA-1 AE or CE (its text is the message).</summary>
        public const int AppError = 2041;
        /// <summary><see cref="MLLPClient"/>: the acknowledgement was MSA-1 AR or CR.</summary>
        public const int AppReject = 2042;
        /// <summary><see cref="MLLPClient"/>: an HL7 acknowledgement whose MSA-2 matches no
        /// outstanding message (Error event; the message keeps waiting).</summary>
        public const int AckMismatch = 2043;
        /// <summary>A connection did not start with a valid PROXY protocol header
        /// (ProxyProtocol setting) and was closed; reported through the Error event.</summary>
        public const int ProxyHeader = 2050;

        /// <summary>The result code (the reference's error number where it has one).</summary>
        public int Code { get; private set; }

        public MLLPException(int code, string message) : base(message)
        {
            Code = code;
        }

        protected MLLPException(System.Runtime.Serialization.SerializationInfo info,
                                System.Runtime.Serialization.StreamingContext context)
            : base(info, context)
        {
            Code = info.GetInt32("Code");
        }

        public override void GetObjectData(System.Runtime.Serialization.SerializationInfo info,
                                           System.Runtime.Serialization.StreamingContext context)
        {
            base.GetObjectData(info, context);
            info.AddValue("Code", Code);
        }

        /// <summary>The library's description of a result code.</summary>
        public static string Describe(int code)
        {
            return Native.PtrToUtf8(Native.mllp_error_description(code)) ?? string.Empty;
        }

        /// <summary>Builds the exception for a failed call; must run on the failing thread,
        /// right after the call, to pick up its message.</summary>
        internal static MLLPException FromCode(int code)
        {
            string msg = null;
            if (Native.mllp_last_error_code() == code)
                msg = Native.LastErrorMessage();
            if (string.IsNullOrEmpty(msg))
                msg = Describe(code);
            return new MLLPException(code, msg);
        }

        public override string ToString()
        {
            return "MLLPException (" + Code + "): " + base.ToString();
        }
    }
}
