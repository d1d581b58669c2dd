// P/Invoke declarations for the client (sender) part of include/mllp.h: mllp_client_*, its
// event structs and mllp_send_result. Same conventions as Native.cs (exact C layouts,
// uint8_t as byte, size_t as UIntPtr, pointers as IntPtr, Cdecl).
using System;
using System.Runtime.InteropServices;

namespace Mllp
{
    /// <summary>The native client handle. ReleaseHandle calls mllp_client_free exactly once.</summary>
    /// <remarks>As for the server, the registered callbacks are static delegates (see
    /// MLLPClient.Thunks) that find their MLLPClient through a weak GCHandle, released by the
    /// library (mllp_client_set_user_data's release callback).</remarks>
    internal sealed class MllpClientHandle : SafeHandle
    {
        /// <summary>Set by MLLPClient.Dispose: events (Disconnected, SendDone) still fire during
        /// the free. When the handle is finalized instead, callbacks are removed first.</summary>
        internal volatile bool FireEventsOnFree;

        public MllpClientHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            IntPtr h = handle;
            if (!FireEventsOnFree)
                Native.ClearClientCallbacks(h);
            return Native.mllp_client_free(h) == Native.MLLP_OK;
        }
    }

    /// <summary>mllp_send_result (written by mllp_client_send).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeSendResult
    {
        public ulong MessageId;
        public int AckKind;
        public uint Attempts;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct ClientAckInEvent
    {
        public ulong ConnectionId;
        public ulong MessageId;
        public int Kind;
        public IntPtr ControlId;
        public IntPtr Text;
        public IntPtr Data;
        public UIntPtr Len;
        public byte Matched;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct SendDoneEvent
    {
        public ulong ConnectionId;
        public ulong MessageId;
        public IntPtr ControlId;
        public int ResultCode;
        public IntPtr Description;
        public int AckKind;
        public uint Attempts;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct SslServerAuthenticationEvent
    {
        public ulong ConnectionId;
        public IntPtr CertEncoded;
        public UIntPtr CertEncodedLen;
        public IntPtr CertSubject;
        public IntPtr CertIssuer;
        public IntPtr Status;
        /// <summary>Read-write: starts as the verification result.</summary>
        public byte Accept;
    }

    internal static unsafe partial class Native
    {
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void ClientAckInCb(IntPtr user, ClientAckInEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void SendDoneCb(IntPtr user, SendDoneEvent* e);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void SslServerAuthenticationCb(IntPtr user, SslServerAuthenticationEvent* e);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern MllpClientHandle mllp_client_new();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_free(IntPtr c);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_set_user_data(MllpClientHandle c, IntPtr user, ReleaseCb release);

        // ---- properties ----
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_get_remote_host(MllpClientHandle c, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_set_remote_host(MllpClientHandle c, byte[] host);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_get_remote_port(MllpClientHandle c, out ushort v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_set_remote_port(MllpClientHandle c, ushort port);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_get_local_host(MllpClientHandle c, byte[] buf, ref UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_set_local_host(MllpClientHandle c, byte[] host);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_get_version(MllpClientHandle c, out int v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_set_version(MllpClientHandle c, int version);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_get_timeout(MllpClientHandle c, out uint v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_set_timeout(MllpClientHandle c, uint seconds);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_get_keep_alive(MllpClientHandle c, out byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_set_keep_alive(MllpClientHandle c, byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_get_connected(MllpClientHandle c, out byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_get_ssl_enabled(MllpClientHandle c, out byte v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_set_ssl_enabled(MllpClientHandle c, byte v);
        // The certificate as a raw pointer, referenced by the caller (see mllp_server_set_ssl_cert).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_set_ssl_cert(MllpClientHandle c, IntPtr cert);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_get_pending(MllpClientHandle c, out UIntPtr v);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_config(MllpClientHandle c, byte[] setting, byte[] buf, ref UIntPtr len);

        // ---- actions ----
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_connect(MllpClientHandle c);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_disconnect(MllpClientHandle c);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_send(MllpClientHandle c, byte[] data, UIntPtr len, ref NativeSendResult result);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_send_async(MllpClientHandle c, byte[] data, UIntPtr len, out ulong messageId);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_do_events(MllpClientHandle c, uint timeoutMs, out UIntPtr pending);

        // ---- events ----
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_on_connected(MllpClientHandle c, StatusCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_on_disconnected(MllpClientHandle c, StatusCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_on_ack_in(MllpClientHandle c, ClientAckInCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_on_send_done(MllpClientHandle c, SendDoneCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_on_error(MllpClientHandle c, ErrorCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_on_log(MllpClientHandle c, LogCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_on_ssl_server_authentication(MllpClientHandle c, SslServerAuthenticationCb cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int mllp_client_on_ssl_status(MllpClientHandle c, SslStatusCb cb);

        // Raw-pointer forms for ReleaseHandle (the SafeHandle is closed by then).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_client_on_connected")]
        private static extern int ClearClientConnected(IntPtr c, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_client_on_disconnected")]
        private static extern int ClearClientDisconnected(IntPtr c, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_client_on_ack_in")]
        private static extern int ClearClientAckIn(IntPtr c, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_client_on_send_done")]
        private static extern int ClearClientSendDone(IntPtr c, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_client_on_error")]
        private static extern int ClearClientError(IntPtr c, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_client_on_log")]
        private static extern int ClearClientLog(IntPtr c, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_client_on_ssl_server_authentication")]
        private static extern int ClearClientSslServerAuthentication(IntPtr c, IntPtr cb);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "mllp_client_on_ssl_status")]
        private static extern int ClearClientSslStatus(IntPtr c, IntPtr cb);

        internal static void ClearClientCallbacks(IntPtr c)
        {
            ClearClientConnected(c, IntPtr.Zero);
            ClearClientDisconnected(c, IntPtr.Zero);
            ClearClientAckIn(c, IntPtr.Zero);
            ClearClientSendDone(c, IntPtr.Zero);
            ClearClientError(c, IntPtr.Zero);
            ClearClientLog(c, IntPtr.Zero);
            ClearClientSslServerAuthentication(c, IntPtr.Zero);
            ClearClientSslStatus(c, IntPtr.Zero);
        }
    }
}
