using System;
using System.Globalization;

namespace Mllp
{
    /// <summary>Base of the event args that name a connection.</summary>
    public abstract class MLLPConnectionEventArgs : EventArgs
    {
        internal MLLPConnectionEventArgs(ulong id) { Id = id; }

        /// <summary>The connection's id as the reference spells it (decimal string).
        /// Empty for server-level events (id 0).</summary>
        public string ConnectionId
        {
            get { return Id == 0 ? string.Empty : Id.ToString(CultureInfo.InvariantCulture); }
        }

        /// <summary>The connection's numeric id (0: no connection).</summary>
        public ulong Id { get; private set; }
    }

    /// <summary>ConnectionRequest: a client asks to connect. Set <see cref="Accept"/> to false to refuse.</summary>
    public class MLLPServerConnectionRequestEventArgs : EventArgs
    {
        internal MLLPServerConnectionRequestEventArgs(string address, int port, bool accept)
        {
            Address = address; Port = port; Accept = accept;
        }
        /// <summary>The client's IP address.</summary>
        public string Address { get; private set; }
        /// <summary>The client's port.</summary>
        public int Port { get; private set; }
        /// <summary>Read-write: true (the default) accepts the connection, false refuses it.</summary>
        public bool Accept { get; set; }
    }

    /// <summary>Connected: a connection completed (StatusCode 0, Description "OK") or failed.</summary>
    public class MLLPServerConnectedEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerConnectedEventArgs(ulong id, int code, string description) : base(id)
        {
            StatusCode = code; Description = description;
        }
        public int StatusCode { get; private set; }
        public string Description { get; private set; }
    }

    /// <summary>Disconnected: a connection closed (StatusCode 0 when normal).</summary>
    public class MLLPServerDisconnectedEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerDisconnectedEventArgs(ulong id, int code, string description) : base(id)
        {
            StatusCode = code; Description = description;
        }
        public int StatusCode { get; private set; }
        public string Description { get; private set; }
    }

    /// <summary>StartTransfer: a message starts arriving.</summary>
    public class MLLPServerStartTransferEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerStartTransferEventArgs(ulong id, long seq, string charset, string encoding) : base(id)
        {
            MessageSeq = seq; Charset = charset; Encoding = encoding;
        }
        /// <summary>Sequence number of the message on its connection (1 for the first).</summary>
        public long MessageSeq { get; private set; }
        /// <summary>Extension: MSH-18 of the message as sent ("" when absent or not HL7).</summary>
        public string Charset { get; private set; }
        /// <summary>Extension: the normalised name of the message's character set ("8859/1",
        /// "UNICODE UTF-8", ...; "" when unknown, or when MSH-18 is empty and the DefaultCharset
        /// setting is "").</summary>
        public string Encoding { get; private set; }
    }

    /// <summary>Transfer: a piece of an incoming message.</summary>
    public class MLLPServerTransferEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerTransferEventArgs(ulong id, long bytes, byte[] data) : base(id)
        {
            BytesTransferred = bytes; Data = data;
        }
        /// <summary>Bytes of this message delivered so far, including this piece.</summary>
        public long BytesTransferred { get; private set; }
        /// <summary>A copy of this piece (HL7 may be in any character set: bytes, not text).</summary>
        public byte[] Data { get; private set; }
    }

    /// <summary>EndTransfer: a message has arrived completely (AckOut follows).</summary>
    public class MLLPServerEndTransferEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerEndTransferEventArgs(ulong id, long seq, string charset, string encoding) : base(id)
        {
            MessageSeq = seq; Charset = charset; Encoding = encoding;
        }
        public long MessageSeq { get; private set; }
        /// <summary>Extension: MSH-18 of the message as sent ("" when absent).</summary>
        public string Charset { get; private set; }
        /// <summary>Extension: the normalised name of the message's character set ("" when unknown).</summary>
        public string Encoding { get; private set; }
    }

    /// <summary>Extension: Message: a whole received message in one event (after EndTransfer,
    /// before AckOut). With the ProcessBatch setting, raised once per message of a batch.</summary>
    public class MLLPServerMessageEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerMessageEventArgs(ulong id, long seq, byte[] data, string charset, string encoding,
                                            bool decoded) : base(id)
        {
            MessageSeq = seq; Data = data; Charset = charset; Encoding = encoding; Decoded = decoded;
        }
        /// <summary>Sequence number of the message on its connection (1 for the first).</summary>
        public long MessageSeq { get; private set; }
        /// <summary>A copy of the whole message: UTF-8 when <see cref="Decoded"/>, else the
        /// bytes as received.</summary>
        public byte[] Data { get; private set; }
        /// <summary>MSH-18 as sent ("" when absent).</summary>
        public string Charset { get; private set; }
        /// <summary>The normalised name of the message's character set ("" when unknown).</summary>
        public string Encoding { get; private set; }
        /// <summary>True when Data was converted to UTF-8 (the DecodeToUTF8 setting).</summary>
        public bool Decoded { get; private set; }
    }

    /// <summary>Extension: Duplicate: with the DuplicateWindow setting, a message already
    /// accepted arrived again. It is not delivered (no StartTransfer, Transfer, EndTransfer,
    /// Message or AckOut); the acknowledgement the original got has been sent again byte for
    /// byte.</summary>
    public class MLLPServerDuplicateEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerDuplicateEventArgs(ulong id, byte[] message, string controlId, byte[] reply) : base(id)
        {
            Message = message; ControlId = controlId; Reply = reply;
        }
        /// <summary>A copy of the resent message.</summary>
        public byte[] Message { get; private set; }
        /// <summary>Its MSH-10 (message control id).</summary>
        public string ControlId { get; private set; }
        /// <summary>A copy of the acknowledgement sent again (unframed).</summary>
        public byte[] Reply { get; private set; }
    }

    /// <summary>HL7 MSA-1 reject codes for <see cref="MLLPServerAckOutEventArgs.RejectCode"/>.</summary>
    public enum RejectCode
    {
        /// <summary>AE: application error (the default).</summary>
        AE = 1,
        /// <summary>AR: application reject.</summary>
        AR = 2,
    }

    /// <summary>HL7 acknowledgement codes (MSA-1) for <see cref="MLLPServer.SendAppAck(ulong, byte[], AckCode, string)"/>
    /// and <see cref="MLLPServer.BuildAck(byte[], AckCode, string)"/> (the MLLP_ACK_* constants).</summary>
    public enum AckCode
    {
        /// <summary>AA: application accept.</summary>
        AA = 0,
        /// <summary>AE: application error (same number as <see cref="RejectCode.AE"/>).</summary>
        AE = 1,
        /// <summary>AR: application reject (same number as <see cref="RejectCode.AR"/>).</summary>
        AR = 2,
        /// <summary>CA: commit accept (accept acknowledgement).</summary>
        CA = 3,
        /// <summary>CE: commit error.</summary>
        CE = 4,
        /// <summary>CR: commit reject.</summary>
        CR = 5,
    }

    /// <summary>AckOut: an acknowledgement is about to be sent. Set <see cref="Accept"/> to
    /// false to send a negative one.</summary>
    public class MLLPServerAckOutEventArgs : MLLPConnectionEventArgs
    {
        private readonly IntPtr _msg;
        private readonly UIntPtr _msgLen;
        private byte[] _message;
        internal bool Live = true;

        internal MLLPServerAckOutEventArgs(ulong id, long seq, bool accept, RejectCode reject, IntPtr msg, UIntPtr len,
                                           bool defer, string charset, string encoding)
            : base(id)
        {
            MessageSeq = seq; Accept = accept; RejectCode = reject; _msg = msg; _msgLen = len; Defer = defer;
            Charset = charset; Encoding = encoding;
        }
        /// <summary>Extension: MSH-18 of the message as sent ("" when absent).</summary>
        public string Charset { get; private set; }
        /// <summary>Extension: the normalised name of the message's character set ("" when unknown).</summary>
        public string Encoding { get; private set; }
        /// <summary>Read-write extension: null (the default) lets the library build the
        /// acknowledgement from Accept and RejectCode. Set it to send exactly these bytes instead
        /// (framed by the library): in HL7 ack mode an unframed HL7 ACK message, in MLLP mode the
        /// one ACK (0x06) or NAK (0x15) byte. With <see cref="Defer"/> set, the reply is given
        /// later instead, with <see cref="MLLPServer.AcknowledgeWith(ulong, long, byte[])"/>.</summary>
        public byte[] Reply { get; set; }
        public long MessageSeq { get; private set; }
        /// <summary>Read-write: true (the default) sends a positive acknowledgement (ACK), false a NAK.</summary>
        public bool Accept { get; set; }
        /// <summary>Read-write: in HL7 ack mode, the MSA-1 code used when Accept is false.</summary>
        public RejectCode RejectCode { get; set; }
        /// <summary>Read-write extension: true leaves the decision open (Accept and RejectCode
        /// are then ignored): nothing is sent for this message until
        /// <see cref="MLLPServer.Acknowledge(ulong, long, bool, RejectCode)"/> is called with
        /// this <see cref="MLLPConnectionEventArgs.Id"/> and <see cref="MessageSeq"/>, from any
        /// thread (e.g. after a database commit). Replies still leave in message order, so an
        /// undecided message holds back the acknowledgements of later ones.</summary>
        public bool Defer { get; set; }
        /// <summary>A copy of the complete message being acknowledged (copied on first use,
        /// which must be inside the handler).</summary>
        public byte[] Message
        {
            get
            {
                if (_message == null)
                {
                    if (!Live) throw new InvalidOperationException("Message is only available inside the AckOut handler");
                    _message = Native.CopyBytes(_msg, _msgLen);
                }
                return _message;
            }
        }
    }

    /// <summary>AckIn: the client acknowledged data the server sent.</summary>
    public class MLLPServerAckInEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerAckInEventArgs(ulong id, bool accepted) : base(id) { Accepted = accepted; }
        /// <summary>True for an ACK, false for a NAK (an Error with code 670 follows a NAK).</summary>
        public bool Accepted { get; private set; }
    }

    /// <summary>Error: something went wrong on a connection (ConnectionId empty: on the server).</summary>
    public class MLLPServerErrorEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerErrorEventArgs(ulong id, int code, string description, Exception ex) : base(id)
        {
            ErrorCode = code; Description = description; Exception = ex;
        }
        public int ErrorCode { get; private set; }
        public string Description { get; private set; }
        /// <summary>Not null when the error is an exception thrown by one of the host's own
        /// event handlers (ErrorCode is then 2007); null for errors reported by the library.</summary>
        public Exception Exception { get; private set; }
    }

    /// <summary>Log: a log line (see the LogLevel setting).</summary>
    public class MLLPServerLogEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerLogEventArgs(ulong id, int level, string message, string type) : base(id)
        {
            LogLevel = level; Message = message; LogType = type;
        }
        /// <summary>1 Info, 2 Verbose, 3 Debug.</summary>
        public int LogLevel { get; private set; }
        public string Message { get; private set; }
        /// <summary>"INFO", "VERBOSE" or "DEBUG".</summary>
        public string LogType { get; private set; }
    }

    /// <summary>SSLClientAuthentication: a TLS client presented its certificate (or none:
    /// <see cref="CertEncoded"/> is empty). Fires when
    /// <see cref="MLLPServer.SSLAuthenticateClients"/> is on.</summary>
    public class MLLPServerSSLClientAuthenticationEventArgs : MLLPConnectionEventArgs
    {
        private readonly byte[] _cert;

        internal MLLPServerSSLClientAuthenticationEventArgs(ulong id, byte[] cert, string subject, string issuer,
                                                            string status, bool accept) : base(id)
        {
            _cert = cert; CertSubject = subject; CertIssuer = issuer; Status = status; Accept = accept;
        }
        /// <summary>The client's certificate, DER (a copy; empty when it sent none).</summary>
        public byte[] CertEncoded { get { return (byte[])_cert.Clone(); } }
        /// <summary>The certificate's subject DN.</summary>
        public string CertSubject { get; private set; }
        /// <summary>The certificate's issuer DN.</summary>
        public string CertIssuer { get; private set; }
        /// <summary>"OK", or why verification against the SSLClientCACerts setting failed.</summary>
        public string Status { get; private set; }
        /// <summary>Read-write: true keeps the connection, false closes it. Starts as the
        /// library's verification result: a recommendation the handler may override either way.</summary>
        public bool Accept { get; set; }
    }

    /// <summary>SSLConnectionRequest: a TLS ClientHello arrived. A handler may choose the
    /// certificate presented on this connection instead of <see cref="MLLPServer.SSLCert"/>:
    /// either set <see cref="Certificate"/>, or (as in the reference) <see cref="CertStoreType"/>,
    /// <see cref="CertStore"/> (or <see cref="CertStoreB"/>), <see cref="CertPassword"/> and
    /// <see cref="CertSubject"/>, from which the binding loads one after the handlers have run
    /// (a failure is reported through the Error event, code 2020, and SSLCert is presented).
    /// The binding keeps the chosen certificate's handle alive until the connection's
    /// Disconnected event, so the handler's own Certificate may be disposed at any time.</summary>
    public class MLLPServerSSLConnectionRequestEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerSSLConnectionRequestEventArgs(ulong id, string suites, string sigs) : base(id)
        {
            SupportedCipherSuites = suites; SupportedSignatureAlgs = sigs;
            CertStoreType = CertStoreTypes.cstAuto; CertStore = string.Empty; CertPassword = string.Empty;
            CertSubject = "*";
        }
        /// <summary>Comma-separated cipher suites the client supports.</summary>
        public string SupportedCipherSuites { get; private set; }
        /// <summary>Comma-separated signature schemes the client supports.</summary>
        public string SupportedSignatureAlgs { get; private set; }
        /// <summary>Read-write: the store type of an alternative certificate (default cstAuto).</summary>
        public CertStoreTypes CertStoreType { get; set; }
        /// <summary>Read-write: the store of an alternative certificate (a path, or PEM / base64
        /// data); "" for none.</summary>
        public string CertStore { get; set; }
        /// <summary>Read-write: a binary store (e.g. the bytes of a PFX file); takes precedence
        /// over <see cref="CertStore"/> when not null.</summary>
        public byte[] CertStoreB { get; set; }
        /// <summary>Read-write: the password of the store.</summary>
        public string CertPassword { get; set; }
        /// <summary>Read-write: selects the certificate in the store ("*" the first).</summary>
        public string CertSubject { get; set; }
        /// <summary>Read-write extension: the certificate to present; takes precedence over the
        /// Cert* fields. Must not be disposed before the handler returns.</summary>
        public Certificate Certificate { get; set; }
    }

    /// <summary>SSLStatus: progress of a secure connection (informational).</summary>
    public class MLLPServerSSLStatusEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPServerSSLStatusEventArgs(ulong id, string message) : base(id) { Message = message; }
        /// <summary>The text.</summary>
        public string Message { get; private set; }
    }
}
