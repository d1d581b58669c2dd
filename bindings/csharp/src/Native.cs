// P/Invoke declarations for include/mllp.h. Every struct matches the C layout exactly
// (LayoutKind.Sequential, natural alignment, uint8_t booleans as byte, size_t as UIntPtr,
// pointers as IntPtr), so the same code is correct on 32-bit and 64-bit targets.
using System;
using System.Runtime.InteropServices;
using System.Text;

namespace Mllp
{
    /// <summary>The native server handle. ReleaseHandle calls mllp_server_free exactly once.</summary>
    /// <remarks>The callbacks registered on the handle are static delegates (see
    /// MLLPServer.Thunks), never collected; they find their MLLPServer through the user
    /// pointer, a weak GCHandle released by the library after the last callback. Instance
    /// delegates would not do: Mono frees a marshalled delegate's thunk in the delegate's own
    /// finalizer, which can run before this (critical) finalizer frees the server.</remarks>
    internal sealed class MllpServerHandle : SafeHandle
    {
        /// <summary>Set by MLLPServer.Dispose: events (Disconnected) still fire during the free.
        /// When the handle is finalized instead, callbacks are removed first.</summary>
        internal volatile bool FireEventsOnFree;

        /// <summary>AckOut replies handed to the library, pinned per delivering thread: the
        /// library copies a reply when the callback has returned, so it must stay put until
        /// then. The thread's next reply (or the free) unpins it.</summary>
        private readonly System.Collections.Generic.Dictionary<int, GCHandle> _replyPins =
            new System.Collections.Generic.Dictionary<int, GCHandle>();

        /// <summary>Pins a copy of reply for the current thread and returns its address.</summary>
        internal IntPtr PinReply(byte[] reply)
        {
            var copy = new byte[Math.Max(reply.Length, 1)];
            Buffer.BlockCopy(reply, 0, copy, 0, reply.Length);
            var pin = GCHandle.Alloc(copy, GCHandleType.Pinned);
            int tid = System.Threading.Thread.CurrentThread.ManagedThreadId;
            lock (_replyPins)
            {
                GCHandle old;
                if (_replyPins.TryGetValue(tid, out old)) old.Free();
                _replyPins[tid] = pin;
            }
            return pin.AddrOfPinnedObject();
        }

        private void FreeReplyPins()
        {
            lock (_replyPins)
            {
                foreach (var p in _replyPins.Values) p.Free();
                _replyPins.Clear();
            }
        }

        public MllpServerHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            IntPtr h = handle;
            if (!FireEventsOnFree)
                Native.ClearCallbacks(h);
            int rc = Native.mllp_server_free(h);
            if (rc == Native.MLLP_OK) FreeReplyPins();
            if (rc == Native.MLLP_ERR_REENTRANT)
            {
                // The last reference was dropped on the thread that delivers this server's
                // events (e.g. Dispose raced with a callback). Free it from another thread.
                var t = new System.Threading.Thread(() =>
                {
                    for (int i = 0; i < 6000; i++)
                    {
                        int r = Native.mllp_server_free(h);
                        if (r == Native.MLLP_OK) FreeReplyPins();
                        if (r != Native.MLLP_ERR_REENTRANT) break;
                        System.Threading.Thread.Sleep(10);
                    }
                });
                t.IsBackground = true;
                t.Start();
                return true;
            }
            return rc == Native.MLLP_OK;
        }
    }

    /// <summary>mllp_metrics.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct MetricsNative
    {
        public ulong ConnectionsAccepted;
        public ulong ConnectionsRefused;
        public ulong ConnectionsOpen;
        public ulong MessagesReceived;
        public ulong MessagesAccepted;
        public ulong MessagesRefused;
        public ulong MessagesDuplicate;
        public ulong BytesIn;
        public ulong BytesOut;
        public ulong AcksSent;
        public ulong NaksSent;
        public ulong Errors;
        public ulong TlsHandshakesCompleted;
        public ulong TlsHandshakesFailed;
        public ulong AckLatencyCount;
        public double AckLatencySumSeconds;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct ConnectionRequestEvent
    {
        public IntPtr Address;
        public ushort Port;
        public byte Accept;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct StatusEvent
    {
        public ulong ConnectionId;
        public int StatusCode;
        public IntPtr Description;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct TransferBoundaryEvent
    {
        public ulong ConnectionId;
        public ulong MessageSeq;
        /// <summary>MSH-18 as sent (NUL-terminated; "" when absent).</summary>
        public IntPtr Charset;
        /// <summary>The normalised character set name ("" when unknown).</summary>
        public IntPtr Encoding;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct TransferEvent
    {
        public ulong ConnectionId;
        public ulong BytesTransferred;
        public IntPtr Data;
        public UIntPtr Len;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct AckOutEvent
    {
        public ulong ConnectionId;
        public ulong MessageSeq;
        public byte Accept;
        public int RejectCode;
        public IntPtr Message;
        public UIntPtr MessageLen;
        /// <summary>Read-write (added last in the C struct): 1 defers the decision to
        /// mllp_server_acknowledge.</summary>
        public byte Defer;
        public IntPtr Charset;
        public IntPtr Encoding;
        /// <summary>Read-write: NULL lets the library build the reply; else these bytes are
        /// sent (copied when the callback returns).</summary>
        public IntPtr Reply;
        public UIntPtr ReplyLen;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct MessageEvent
    {
        public ulong ConnectionId;
        public ulong MessageSeq;
        public IntPtr Data;
        public UIntPtr Len;
        public IntPtr Charset;
        public IntPtr Encoding;
        public byte Decoded;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct DuplicateEvent
    {
        public ulong ConnectionId;
        public IntPtr Message;
        public UIntPtr MessageLen;
        public IntPtr ControlId;
        public IntPtr Reply;
        public UIntPtr ReplyLen;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct AckInEvent
    {
        public ulong ConnectionId;
        public byte Accepted;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct ErrorEvent
    {
        public ulong ConnectionId;
        public int ErrorCode;
        public IntPtr Description;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct LogEvent
    {
        public ulong ConnectionId;
        public int LogLevel;
        public IntPtr Message;
        public IntPtr LogType;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct SslClientAuthenticationEvent
    {
        public ulong ConnectionId;
        public IntPtr CertEncoded;
        public UIntPtr CertEncodedLen;
        public IntPtr CertSubject;
        public IntPtr CertIssuer;
        public IntPtr Status;
        public byte Accept;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct SslConnectionRequestEvent
    {
        public ulong ConnectionId;
        public IntPtr SupportedCipherSuites;
        public IntPtr SupportedSignatureAlgs;
        public IntPtr Certificate;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct SslStatusEvent
    {
        public ulong ConnectionId;
        public IntPtr Message;
    }

    internal static unsafe partial class Native
    {
        private const string Lib = "mllp";

        internal const int MLLP_OK = 0;
        internal const int MLLP_ERR_NO_SUCH_CONNECTION = 2002;
        internal const int MLLP_ERR_REENTRANT = 2006;
        internal const int MLLP_ERR_PANIC = 2007;
        internal const int MLLP_ERR_BUFFER_TOO_SMALL = 2008;

        internal const int MLLP_CERT_FIELD_SUBJECT = 1;
        internal const int MLLP_CERT_FIELD_ISSUER = 2;
        internal const int MLLP_CERT_FIELD_SERIAL_NUMBER = 3;
        internal const int MLLP_CERT_FIELD_EFFECTIVE_DATE = 4;
        internal const int MLLP_CERT_FIELD_EXPIRATION_DATE = 5;
        internal const int MLLP_CERT_FIELD_THUMBPRINT_SHA1 = 6;
        internal const int MLLP_CERT_FIELD_THUMBPRINT_SHA256 = 7;

        // ---- callback types ----
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void ConnectionRequestCb(IntPtr user, ConnectionRequestEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void StatusCb(IntPtr user, StatusEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void TransferBoundaryCb(IntPtr user, TransferBoundaryEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void TransferCb(IntPtr user, TransferEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void AckOutCb(IntPtr user, AckOutEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void AckInCb(IntPtr user, AckInEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void MessageCb(IntPtr user, MessageEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void DuplicateCb(IntPtr user, DuplicateEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void ErrorCb(IntPtr user, ErrorEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void LogCb(IntPtr user, LogEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void ThreadCb(IntPtr user);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void SslClientAuthenticationCb(IntPtr user, SslClientAuthenticationEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void SslConnectionRequestCb(IntPtr user, SslConnectionRequestEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void SslStatusCb(IntPtr user, SslStatusEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void ReleaseCb(IntPtr user);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate IntPtr ReadCb(IntPtr user, IntPtr buf, UIntPtr cap);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int WriteCb(IntPtr user, IntPtr data, UIntPtr len);

        // ---- library ----
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr mllp_version();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr mllp_error_description(int code);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_last_error_code();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr mllp_last_error_message();

        // ---- callbacks registration ----
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_connection_request(MllpServerHandle s, ConnectionRequestCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_connected(MllpServerHandle s, StatusCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_disconnected(MllpServerHandle s, StatusCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_start_transfer(MllpServerHandle s, TransferBoundaryCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_transfer(MllpServerHandle s, TransferCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_end_transfer(MllpServerHandle s, TransferBoundaryCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_ack_out(MllpServerHandle s, AckOutCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_ack_in(MllpServerHandle s, AckInCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_message(MllpServerHandle s, MessageCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_duplicate(MllpServerHandle s, DuplicateCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_error(MllpServerHandle s, ErrorCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_log(MllpServerHandle s, LogCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_thread_start(MllpServerHandle s, ThreadCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_thread_stop(MllpServerHandle s, ThreadCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_ssl_client_authentication(MllpServerHandle s, SslClientAuthenticationCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_ssl_connection_request(MllpServerHandle s, SslConnectionRequestCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_on_ssl_status(MllpServerHandle s, SslStatusCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_set_user_data(MllpServerHandle s, IntPtr user, ReleaseCb release);

        // Raw-pointer forms, used only from ReleaseHandle (the SafeHandle is closed by then) to
        // remove every callback before freeing: all callback setters accept NULL.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_connection_request")]
        private static extern int ClearConnectionRequest(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_connected")]
        private static extern int ClearConnected(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_disconnected")]
        private static extern int ClearDisconnected(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_start_transfer")]
        private static extern int ClearStartTransfer(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_transfer")]
        private static extern int ClearTransfer(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_end_transfer")]
        private static extern int ClearEndTransfer(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_ack_out")]
        private static extern int ClearAckOut(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_ack_in")]
        private static extern int ClearAckIn(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_message")]
        private static extern int ClearMessage(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_duplicate")]
        private static extern int ClearDuplicate(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_error")]
        private static extern int ClearError(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_log")]
        private static extern int ClearLog(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_ssl_client_authentication")]
        private static extern int ClearSslClientAuthentication(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_ssl_connection_request")]
        private static extern int ClearSslConnectionRequest(IntPtr s, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_server_on_ssl_status")]
        private static extern int ClearSslStatus(IntPtr s, IntPtr cb);

        internal static void ClearCallbacks(IntPtr s)
        {
            ClearConnectionRequest(s, IntPtr.Zero);
            ClearConnected(s, IntPtr.Zero);
            ClearDisconnected(s, IntPtr.Zero);
            ClearStartTransfer(s, IntPtr.Zero);
            ClearTransfer(s, IntPtr.Zero);
            ClearEndTransfer(s, IntPtr.Zero);
            ClearAckOut(s, IntPtr.Zero);
            ClearAckIn(s, IntPtr.Zero);
            ClearMessage(s, IntPtr.Zero);
            ClearDuplicate(s, IntPtr.Zero);
            ClearError(s, IntPtr.Zero);
            ClearLog(s, IntPtr.Zero);
            ClearSslClientAuthentication(s, IntPtr.Zero);
            ClearSslConnectionRequest(s, IntPtr.Zero);
            ClearSslStatus(s, IntPtr.Zero);
            // The thread start/stop hooks stay: they touch no user code.
        }

        // ---- connections ----
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_connected(MllpServerHandle s, ulong id, out byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_receiving(MllpServerHandle s, ulong id, out byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_remote_host(MllpServerHandle s, ulong id, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_remote_port(MllpServerHandle s, ulong id, out ushort v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_local_address(MllpServerHandle s, ulong id, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_timeout(MllpServerHandle s, ulong id, out uint v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_set_timeout(MllpServerHandle s, ulong id, uint seconds);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_input_data(MllpServerHandle s, ulong id, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_set_input_data(MllpServerHandle s, ulong id, byte[] data, UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_input_file_name(MllpServerHandle s, ulong id, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_set_input_file_name(MllpServerHandle s, ulong id, byte[] path);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_output_data(MllpServerHandle s, ulong id, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_output_file_name(MllpServerHandle s, ulong id, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_set_output_file_name(MllpServerHandle s, ulong id, byte[] path);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_set_input_stream(MllpServerHandle s, ulong id, ReadCb read, ReleaseCb close, IntPtr user);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_set_output_stream(MllpServerHandle s, ulong id, WriteCb write, ReleaseCb close, IntPtr user);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_connection_get_ssl_negotiated(MllpServerHandle s, ulong id, byte[] name, byte[] buf, ref UIntPtr len);

        // ---- certificates and TLS ----
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_certificate_load(int storeType, byte[] store, UIntPtr storeLen, byte[] password,
                                                         byte[] subject, out CertificateHandle cert);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern void mllp_certificate_free(IntPtr cert);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_certificate_get_field(CertificateHandle cert, int field, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_certificate_get_encoded(CertificateHandle cert, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_certificate_get_private_key_available(CertificateHandle cert, out byte v);
        // The certificate is passed as a raw pointer, referenced by the caller
        // (DangerousAddRef): with two SafeHandle parameters, Mono leaks the reference it took on
        // the first when marshalling the second throws ObjectDisposedException, and the server
        // could then never be freed.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_set_ssl_cert(MllpServerHandle s, IntPtr cert);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_ssl_cert(MllpServerHandle s, out CertificateHandle cert);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_ssl_enabled(MllpServerHandle s, out byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_set_ssl_enabled(MllpServerHandle s, byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_ssl_authenticate_clients(MllpServerHandle s, out byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_set_ssl_authenticate_clients(MllpServerHandle s, byte v);

        // ---- server ----
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_acknowledge(MllpServerHandle s, ulong id, ulong seq, byte accept, int rejectCode);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_acknowledge_with(MllpServerHandle s, ulong id, ulong seq, byte[] reply,
                                                                UIntPtr replyLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_send_app_ack(MllpServerHandle s, ulong id, byte[] message, UIntPtr messageLen,
                                                            int code, byte[] text, out byte sent);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_duplicate_count(MllpServerHandle s, out ulong count);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_metrics(MllpServerHandle s, out MetricsNative m);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_metrics_text(MllpServerHandle s, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_hl7_build_ack(byte[] message, UIntPtr messageLen, int code, byte[] text,
                                                      byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern MllpServerHandle mllp_server_new();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_free(IntPtr s);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_default_timeout(MllpServerHandle s, out uint v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_keep_alive(MllpServerHandle s, out byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_listening(MllpServerHandle s, out byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_local_port(MllpServerHandle s, out ushort v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_version(MllpServerHandle s, out int v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_connection_count(MllpServerHandle s, out UIntPtr v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_set_default_timeout(MllpServerHandle s, uint seconds);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_set_keep_alive(MllpServerHandle s, byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_set_local_port(MllpServerHandle s, ushort port);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_set_version(MllpServerHandle s, int version);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_local_host(MllpServerHandle s, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_set_local_host(MllpServerHandle s, byte[] host);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_config(MllpServerHandle s, byte[] setting, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_start_listening(MllpServerHandle s);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_stop_listening(MllpServerHandle s);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_shutdown(MllpServerHandle s);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_reset(MllpServerHandle s);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_disconnect(MllpServerHandle s, ulong id);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_interrupt(MllpServerHandle s, ulong id);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_send(MllpServerHandle s, ulong id);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_send_bytes(MllpServerHandle s, ulong id, byte[] data, UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_do_events(MllpServerHandle s, uint timeoutMs, out UIntPtr delivered);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_server_get_connections(MllpServerHandle s, ulong[] ids, ref UIntPtr len);

        // ---- helpers ----

        /// <summary>NUL-terminated UTF-8 bytes for a C string argument (null stays null).</summary>
        internal static byte[] Utf8z(string s)
        {
            if (s == null) return null;
            int n = Encoding.UTF8.GetByteCount(s);
            var b = new byte[n + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, b, 0);
            return b;
        }

        /// <summary>Decodes a NUL-terminated UTF-8 string owned by the library.</summary>
        internal static string PtrToUtf8(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            byte* s = (byte*)p;
            int n = 0;
            while (s[n] != 0) n++;
            return n == 0 ? string.Empty : Encoding.UTF8.GetString(s, n);
        }

        /// <summary>Copies native bytes into a new managed array.</summary>
        internal static byte[] CopyBytes(IntPtr p, UIntPtr len)
        {
            ulong n = len.ToUInt64();
            if (n == 0 || p == IntPtr.Zero) return new byte[0];
            if (n > int.MaxValue) throw new OverflowException("native buffer larger than 2 GB");
            var b = new byte[(int)n];
            Marshal.Copy(p, b, 0, (int)n);
            return b;
        }

        internal static string LastErrorMessage()
        {
            return PtrToUtf8(mllp_last_error_message()) ?? string.Empty;
        }

        internal delegate int BufferCall(byte[] buf, ref UIntPtr len);

        /// <summary>Runs a call under the buffer rule: asks for the size, then copies. Returns
        /// the bytes written (for strings, including the NUL).</summary>
        internal static byte[] GetBuffer(BufferCall call)
        {
            byte[] buf = null;
            for (int attempt = 0; attempt < 8; attempt++)
            {
                UIntPtr len = new UIntPtr(buf == null ? 0u : (ulong)buf.Length);
                int rc = call(buf, ref len);
                if (rc == MLLP_OK)
                {
                    ulong used = len.ToUInt64();
                    if (buf == null) return new byte[0];
                    if (used == (ulong)buf.Length) return buf;
                    var r = new byte[used];
                    Array.Copy(buf, r, (long)used);
                    return r;
                }
                if (rc != MLLP_ERR_BUFFER_TOO_SMALL) throw MLLPException.FromCode(rc);
                ulong need = len.ToUInt64();
                if (need == 0) return new byte[0];
                if (need > int.MaxValue) throw new OverflowException("value larger than 2 GB");
                buf = new byte[need];   // the value may grow between calls: retry
            }
            throw new MLLPException(Native.MLLP_ERR_BUFFER_TOO_SMALL, "value kept growing while being read");
        }

        internal static string GetString(BufferCall call)
        {
            byte[] b = GetBuffer(call);
            int n = b.Length;
            while (n > 0 && b[n - 1] == 0) n--;
            return Encoding.UTF8.GetString(b, 0, n);
        }

        internal static void Check(int rc)
        {
            if (rc != MLLP_OK) throw MLLPException.FromCode(rc);
        }
    }
}
