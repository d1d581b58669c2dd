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
        internal MLLPServerStartTransferEventArgs(ulong id, long seq) : base(id) { MessageSeq = seq; }
        /// <summary>Sequence number of the message on its connection (1 for the first).</summary>
        public long MessageSeq { get; private set; }
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
        internal MLLPServerEndTransferEventArgs(ulong id, long seq) : base(id) { MessageSeq = seq; }
        public long MessageSeq { get; private set; }
    }

    /// <summary>HL7 MSA-1 reject codes for <see cref="MLLPServerAckOutEventArgs.RejectCode"/>.</summary>
    public enum RejectCode
    {
        /// <summary>AE: application error (the default).</summary>
        AE = 1,
        /// <summary>AR: application reject.</summary>
        AR = 2,
    }

    /// <summary>AckOut: an acknowledgement is about to be sent. Set <see cref="Accept"/> to
    /// false to send a negative one.</summary>
    public class MLLPServerAckOutEventArgs : MLLPConnectionEventArgs
    {
        private readonly IntPtr _msg;
        private readonly UIntPtr _msgLen;
        private byte[] _message;
        internal bool Live = true;

        internal MLLPServerAckOutEventArgs(ulong id, long seq, bool accept, RejectCode reject, IntPtr msg, UIntPtr len)
            : base(id)
        {
            MessageSeq = seq; Accept = accept; RejectCode = reject; _msg = msg; _msgLen = len;
        }
        public long MessageSeq { get; private set; }
        /// <summary>Read-write: true (the default) sends a positive acknowledgement (ACK), false a NAK.</summary>
        public bool Accept { get; set; }
        /// <summary>Read-write: in HL7 ack mode, the MSA-1 code used when Accept is false.</summary>
        public RejectCode RejectCode { get; set; }
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
}
