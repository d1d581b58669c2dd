using System;

namespace Mllp
{
    /// <summary>The kind of an acknowledgement an <see cref="MLLPClient"/> received (the
    /// MLLP_ACK_* numbers of mllp.h): an HL7 MSA-1 code, a commit ACK/NAK byte (AckMode=MLLP),
    /// or <see cref="None"/> when nothing was expected or received.</summary>
    public enum AckKind
    {
        /// <summary>Nothing expected (AckMode=None) or nothing received.</summary>
        None = -1,
        /// <summary>MSA-1 AA: application accept.</summary>
        AA = 0,
        /// <summary>MSA-1 AE: application error.</summary>
        AE = 1,
        /// <summary>MSA-1 AR: application reject.</summary>
        AR = 2,
        /// <summary>MSA-1 CA: commit accept.</summary>
        CA = 3,
        /// <summary>MSA-1 CE: commit error.</summary>
        CE = 4,
        /// <summary>MSA-1 CR: commit reject.</summary>
        CR = 5,
        /// <summary>The MLLP commit acknowledgement byte (0x06).</summary>
        ACK = 6,
        /// <summary>The MLLP negative commit acknowledgement byte (0x15).</summary>
        NAK = 7,
    }

    /// <summary>The outcome of <see cref="MLLPClient.Send(byte[])"/> (and of the task of
    /// <see cref="MLLPClient.SendAsync(byte[])"/>): which message it was, the kind of its last
    /// acknowledgement and how many times it was sent.</summary>
    public sealed class SendResult
    {
        internal SendResult(ulong messageId, AckKind ackKind, int attempts)
        {
            MessageId = messageId; AckKind = ackKind; Attempts = attempts;
        }
        /// <summary>The message's id (1 for the client's first message), as in the SendDone
        /// and AckIn events and as <see cref="MLLPClient.Enqueue(byte[])"/> returns it.</summary>
        public ulong MessageId { get; private set; }
        /// <summary>The kind of the last acknowledgement (<see cref="Mllp.AckKind.None"/> with AckMode=None).</summary>
        public AckKind AckKind { get; private set; }
        /// <summary>1 + the number of resends.</summary>
        public int Attempts { get; private set; }

        public override string ToString()
        {
            return "SendResult(MessageId=" + MessageId + ", AckKind=" + AckKind + ", Attempts=" + Attempts + ")";
        }
    }

    /// <summary>Connected: the client's connection is open (StatusCode 0; TLS handshake done
    /// with SSLEnabled) or connecting failed. <see cref="MLLPConnectionEventArgs.Id"/> is the
    /// client's connection number: 1 for the first connect, +1 per reconnect.</summary>
    public class MLLPClientConnectedEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPClientConnectedEventArgs(ulong id, int code, string description) : base(id)
        {
            StatusCode = code; Description = description;
        }
        /// <summary>0 when connected, else the error code (10061 refused, 2021 TLS ...).</summary>
        public int StatusCode { get; private set; }
        public string Description { get; private set; }
    }

    /// <summary>Disconnected: the client's connection closed (StatusCode 0 when closed normally).</summary>
    public class MLLPClientDisconnectedEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPClientDisconnectedEventArgs(ulong id, int code, string description) : base(id)
        {
            StatusCode = code; Description = description;
        }
        public int StatusCode { get; private set; }
        public string Description { get; private set; }
    }

    /// <summary>AckIn: an acknowledgement arrived from the server.</summary>
    public class MLLPClientAckInEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPClientAckInEventArgs(ulong id, ulong messageId, AckKind kind, string controlId, string text,
                                          byte[] data, bool matched) : base(id)
        {
            MessageId = messageId; Kind = kind; ControlId = controlId; Text = text; Data = data; Matched = matched;
        }
        /// <summary>The message it answered; 0 when it matched none (late, mismatched, unsolicited).</summary>
        public ulong MessageId { get; private set; }
        /// <summary>Its kind (never <see cref="AckKind.None"/>).</summary>
        public AckKind Kind { get; private set; }
        /// <summary>MSA-2 ("" for a commit ACK/NAK byte).</summary>
        public string ControlId { get; private set; }
        /// <summary>MSA-3 and ERR text joined by "; " ("" if none).</summary>
        public string Text { get; private set; }
        /// <summary>A copy of the acknowledgement as received, unframed.</summary>
        public byte[] Data { get; private set; }
        /// <summary>True when it answered an outstanding message.</summary>
        public bool Matched { get; private set; }
    }

    /// <summary>SendDone: a message's fate is decided: positively acknowledged (ResultCode 0)
    /// or failed after its retries (670 NAK, 2040 no acknowledgement in time, 2041 AE/CE,
    /// 2042 AR/CR, 1120 connection lost, a socket error ...). Raised for every message, in queue
    /// order.</summary>
    public class MLLPClientSendDoneEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPClientSendDoneEventArgs(ulong id, ulong messageId, string controlId, int code, string description,
                                             AckKind kind, int attempts) : base(id)
        {
            MessageId = messageId; ControlId = controlId; ResultCode = code; Description = description;
            AckKind = kind; Attempts = attempts;
        }
        /// <summary>The message's id.</summary>
        public ulong MessageId { get; private set; }
        /// <summary>The message's MSH-10 ("" if it has none).</summary>
        public string ControlId { get; private set; }
        /// <summary>0 = positively acknowledged (or written, AckMode=None); else the error code.</summary>
        public int ResultCode { get; private set; }
        /// <summary>"OK" or the reason.</summary>
        public string Description { get; private set; }
        /// <summary>The kind of the last acknowledgement (<see cref="Mllp.AckKind.None"/> if none came).</summary>
        public AckKind AckKind { get; private set; }
        /// <summary>1 + the number of resends.</summary>
        public int Attempts { get; private set; }
        /// <summary>True when ResultCode is 0.</summary>
        public bool Succeeded { get { return ResultCode == 0; } }
    }

    /// <summary>Error: something went wrong (e.g. 2043: an HL7 ACK whose MSA-2 matches no
    /// outstanding message), or a handler threw (ErrorCode 2007, Exception set).</summary>
    public class MLLPClientErrorEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPClientErrorEventArgs(ulong id, int code, string description, Exception ex) : base(id)
        {
            ErrorCode = code; Description = description; Exception = ex;
        }
        public int ErrorCode { get; private set; }
        public string Description { get; private set; }
        /// <summary>Not null when the error is an exception thrown by one of the host's own
        /// event handlers (ErrorCode 2007).</summary>
        public Exception Exception { get; private set; }
    }

    /// <summary>Log: a log line (see the LogLevel setting).</summary>
    public class MLLPClientLogEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPClientLogEventArgs(ulong id, int level, string message, string type) : base(id)
        {
            LogLevel = level; Message = message; LogType = type;
        }
        /// <summary>1 Info, 2 Verbose, 3 Debug.</summary>
        public int LogLevel { get; private set; }
        public string Message { get; private set; }
        /// <summary>"INFO", "VERBOSE" or "DEBUG".</summary>
        public string LogType { get; private set; }
    }

    /// <summary>SSLServerAuthentication: the server presented its certificate in the TLS
    /// handshake. <see cref="Accept"/> starts as the library's verification result
    /// (SSLServerCACerts, SSLAcceptServerCertStore or the system roots; SSLServerName); a handler
    /// may override it either way. Refusing fails the connect with 2023.</summary>
    public class MLLPClientSSLServerAuthenticationEventArgs : MLLPConnectionEventArgs
    {
        private readonly byte[] _cert;

        internal MLLPClientSSLServerAuthenticationEventArgs(ulong id, byte[] cert, string subject, string issuer,
                                                            string status, bool accept) : base(id)
        {
            _cert = cert; CertSubject = subject; CertIssuer = issuer; Status = status; Accept = accept;
        }
        /// <summary>The server's certificate, DER (a copy; the whole chain concatenated with
        /// SSLIncludeCertChain=True).</summary>
        public byte[] CertEncoded { get { return (byte[])_cert.Clone(); } }
        /// <summary>The certificate's subject DN.</summary>
        public string CertSubject { get; private set; }
        /// <summary>The certificate's issuer DN.</summary>
        public string CertIssuer { get; private set; }
        /// <summary>"OK", or why verification failed.</summary>
        public string Status { get; private set; }
        /// <summary>Read-write: true accepts the server's certificate, false refuses it.</summary>
        public bool Accept { get; set; }
    }

    /// <summary>SSLStatus: progress of the client's secure connection (informational).</summary>
    public class MLLPClientSSLStatusEventArgs : MLLPConnectionEventArgs
    {
        internal MLLPClientSSLStatusEventArgs(ulong id, string message) : base(id) { Message = message; }
        public string Message { get; private set; }
    }
}
