using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Mllp
{
    /// <summary>
    /// An MLLP (HL7 v2 over TCP) client, the sender, over the native mllp library's
    /// mllp_client. It connects to RemoteHost:RemotePort, frames each message, waits for its
    /// acknowledgement (a commit ACK/NAK byte with AckMode=MLLP, the default for Version 2; an
    /// HL7 ACK whose MSA-2 matches the message's MSH-10 with AckMode=HL7) and resends after a
    /// timeout or a negative acknowledgement (settings MaxRetries, RetryDelay, RetryMaxDelay,
    /// RetryOnNegative).
    /// </summary>
    /// <remarks>
    /// Threads: the client has no thread of its own. All I/O happens, and every event is raised,
    /// on the thread calling <see cref="Connect"/>, <see cref="Send(byte[])"/>,
    /// <see cref="DoEvents"/>, <see cref="Disconnect"/> or <see cref="Dispose"/>, inside that
    /// call. Messages queued with <see cref="Enqueue(byte[])"/> or <see cref="SendAsync(byte[])"/>
    /// make progress only inside <see cref="DoEvents"/> (or a later blocking call): call it in a
    /// loop until it returns 0. From a handler, Enqueue/SendAsync, properties and Config are
    /// allowed; Send, Connect, DoEvents and Dispose throw <see cref="MLLPException"/> 2006.
    /// Exceptions thrown by handlers never reach native code: they are reported through the
    /// <see cref="Error"/> event (ErrorCode 2007, Exception set), or to Trace from an Error handler.
    /// Lifetime: Dispose disconnects (Disconnected is raised) and frees the native client; a
    /// client never disposed is freed by its finalizer, without events.
    /// </remarks>
    public sealed class MLLPClient : IDisposable
    {
        private readonly MllpClientHandle _h;
        private volatile Encoding _encoding = new UTF8Encoding(false);
        /// <summary>The tasks of SendAsync, by message id, completed by SendDone. Registered
        /// under the lock held across mllp_client_send_async, so a SendDone raised on another
        /// thread meanwhile cannot miss its task.</summary>
        private readonly Dictionary<ulong, TaskCompletionSource<SendResult>> _tasks =
            new Dictionary<ulong, TaskCompletionSource<SendResult>>();

        [ThreadStatic] private static List<MLLPClient> t_dispatching;
        [ThreadStatic] private static bool t_reportingHandlerError;

        /// <summary>Creates a client with the defaults (RemoteHost "127.0.0.1", RemotePort 0:
        /// set it), not connected.</summary>
        public MLLPClient()
        {
            _h = Native.mllp_client_new();
            if (_h == null || _h.IsInvalid)
                throw new OutOfMemoryException("mllp_client_new returned NULL");
            // Static delegates (never collected) find this client through the user pointer, a
            // weak GCHandle released by the library after the last callback.
            IntPtr user = GCHandle.ToIntPtr(GCHandle.Alloc(this, GCHandleType.Weak));
            int rc;
            try { rc = Native.mllp_client_set_user_data(_h, user, Thunks.ReleaseUser); }
            catch { GCHandle.FromIntPtr(user).Free(); _h.Dispose(); throw; }
            if (rc != Native.MLLP_OK) { GCHandle.FromIntPtr(user).Free(); _h.Dispose(); throw MLLPException.FromCode(rc); }
            Native.Check(Native.mllp_client_on_connected(_h, Thunks.Connected));
            Native.Check(Native.mllp_client_on_disconnected(_h, Thunks.Disconnected));
            Native.Check(Native.mllp_client_on_ack_in(_h, Thunks.AckIn));
            Native.Check(Native.mllp_client_on_send_done(_h, Thunks.SendDone));
            Native.Check(Native.mllp_client_on_error(_h, Thunks.Error));
            Native.Check(Native.mllp_client_on_log(_h, Thunks.Log));
            Native.Check(Native.mllp_client_on_ssl_server_authentication(_h, Thunks.SslServerAuthentication));
            Native.Check(Native.mllp_client_on_ssl_status(_h, Thunks.SslStatus));
        }

        /// <summary>A client for remoteHost:remotePort (not connected yet: Send connects when needed).</summary>
        public MLLPClient(string remoteHost, int remotePort) : this()
        {
            try { RemoteHost = remoteHost; RemotePort = remotePort; }
            catch { Dispose(); throw; }
        }

        // ------------------------------------------------------------------ events

        /// <summary>The connection is open, or connecting failed (StatusCode not 0).</summary>
        public event EventHandler<MLLPClientConnectedEventArgs> Connected;
        /// <summary>The connection closed.</summary>
        public event EventHandler<MLLPClientDisconnectedEventArgs> Disconnected;
        /// <summary>An acknowledgement arrived.</summary>
        public event EventHandler<MLLPClientAckInEventArgs> AckIn;
        /// <summary>A message was acknowledged, or failed after its retries.</summary>
        public event EventHandler<MLLPClientSendDoneEventArgs> SendDone;
        /// <summary>Something went wrong (or a handler threw).</summary>
        public event EventHandler<MLLPClientErrorEventArgs> Error;
        /// <summary>Log lines (see the LogLevel setting).</summary>
        public event EventHandler<MLLPClientLogEventArgs> Log;
        /// <summary>The TLS server presented its certificate; set Accept to override the
        /// library's verdict.</summary>
        public event EventHandler<MLLPClientSSLServerAuthenticationEventArgs> SSLServerAuthentication;
        /// <summary>Progress of the secure connection.</summary>
        public event EventHandler<MLLPClientSSLStatusEventArgs> SSLStatus;

        // ------------------------------------------------------------------ properties

        /// <summary>Encoding of the string forms of Send, Enqueue and SendAsync (default UTF-8,
        /// no BOM). The byte[] forms are passed through untouched.</summary>
        public Encoding TextEncoding
        {
            get { return _encoding; }
            set { if (value == null) throw new ArgumentNullException("value"); _encoding = value; }
        }

        /// <summary>The server's name or IP address (default "127.0.0.1").</summary>
        public string RemoteHost
        {
            get { return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_client_get_remote_host(_h, b, ref l)); }
            set { Native.Check(Native.mllp_client_set_remote_host(_h, Native.Utf8z(value ?? string.Empty))); }
        }

        /// <summary>The server's TCP port (default 0: must be set before connecting).</summary>
        public int RemotePort
        {
            get { ushort v; Native.Check(Native.mllp_client_get_remote_port(_h, out v)); return v; }
            set
            {
                if (value < 0 || value > 65535) throw new ArgumentOutOfRangeException("value", "RemotePort must be 0..65535");
                Native.Check(Native.mllp_client_set_remote_port(_h, (ushort)value));
            }
        }

        /// <summary>The local address connections are made from ("" = any, the default).</summary>
        public string LocalHost
        {
            get { return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_client_get_local_host(_h, b, ref l)); }
            set { Native.Check(Native.mllp_client_set_local_host(_h, Native.Utf8z(value ?? string.Empty))); }
        }

        /// <summary>The MLLP version: 1 or 2 (default 2); it sets AckMode's default (2: MLLP, 1: None).</summary>
        public int Version
        {
            get { int v; Native.Check(Native.mllp_client_get_version(_h, out v)); return v; }
            set { Native.Check(Native.mllp_client_set_version(_h, value)); }
        }

        /// <summary>Seconds (default 10) for connecting (TLS handshake included) and for each
        /// acknowledgement.</summary>
        public int Timeout
        {
            get { uint v; Native.Check(Native.mllp_client_get_timeout(_h, out v)); return (int)Math.Min(v, int.MaxValue); }
            set
            {
                if (value < 0) throw new ArgumentOutOfRangeException("value", "Timeout cannot be negative");
                Native.Check(Native.mllp_client_set_timeout(_h, (uint)value));
            }
        }

        /// <summary>SO_KEEPALIVE on the connection (KeepAliveTime, KeepAliveInterval settings).</summary>
        public bool KeepAlive
        {
            get { byte v; Native.Check(Native.mllp_client_get_keep_alive(_h, out v)); return v != 0; }
            set { Native.Check(Native.mllp_client_set_keep_alive(_h, value ? (byte)1 : (byte)0)); }
        }

        /// <summary>True while the connection is open.</summary>
        public bool IsConnected
        {
            get { byte v; Native.Check(Native.mllp_client_get_connected(_h, out v)); return v != 0; }
        }

        /// <summary>TLS on the connection (default false; takes effect at the next connect).</summary>
        public bool SSLEnabled
        {
            get { byte v; Native.Check(Native.mllp_client_get_ssl_enabled(_h, out v)); return v != 0; }
            set { Native.Check(Native.mllp_client_set_ssl_enabled(_h, value ? (byte)1 : (byte)0)); }
        }

        /// <summary>Write-only: the client certificate (with its private key) for mutual TLS;
        /// null clears it. The client keeps its own reference, so the certificate may be
        /// disposed afterwards. A disposed certificate throws ObjectDisposedException.</summary>
        public Certificate SSLCert
        {
            set
            {
                if (value == null) { Native.Check(Native.mllp_client_set_ssl_cert(_h, IntPtr.Zero)); return; }
                bool added = false;
                try
                {
                    value.Handle.DangerousAddRef(ref added);
                    Native.Check(Native.mllp_client_set_ssl_cert(_h, value.Handle.DangerousGetHandle()));
                }
                finally { if (added) value.Handle.DangerousRelease(); }
            }
        }

        /// <summary>Messages queued or awaiting their acknowledgement.</summary>
        public int Pending
        {
            get { UIntPtr v; Native.Check(Native.mllp_client_get_pending(_h, out v)); return (int)Math.Min(v.ToUInt64(), int.MaxValue); }
        }

        // ------------------------------------------------------------------ methods

        /// <summary>Config("Name=Value") sets a setting and returns ""; Config("Name") returns
        /// its value (AckMode, MaxRetries, RetryDelay, RetryMaxDelay, RetryOnNegative,
        /// MaxOutstanding, the SSL* settings, PendingCount ...). Throws MLLPException 2004
        /// (unknown setting) or 2005 (invalid value).</summary>
        public string Config(string configurationString)
        {
            if (configurationString == null) throw new ArgumentNullException("configurationString");
            byte[] setting = Native.Utf8z(configurationString);
            if (configurationString.IndexOf('=') >= 0)
            {
                UIntPtr zero = UIntPtr.Zero;
                Native.Check(Native.mllp_client_config(_h, setting, null, ref zero));
                return string.Empty;
            }
            return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_client_config(_h, setting, b, ref l));
        }

        /// <summary>Opens the connection (and the TLS session with SSLEnabled), waiting up to
        /// Timeout; Connected is raised. Socket errors: 10061 refused, 10060 timed out, 10065
        /// unreachable; TLS: 2021 handshake, 2023 server certificate refused.</summary>
        public void Connect()
        {
            int rc = Native.mllp_client_connect(_h);
            GC.KeepAlive(this);
            Native.Check(rc);
        }

        /// <summary>Closes the connection (Disconnected is raised); queued messages stay queued.</summary>
        public void Disconnect()
        {
            int rc = Native.mllp_client_disconnect(_h);
            GC.KeepAlive(this);
            Native.Check(rc);
        }

        /// <summary>Sends one HL7 message (unframed) and waits until it is acknowledged,
        /// connecting first when needed. Returns when positively acknowledged (ACK, AA or CA;
        /// with AckMode=None once written); otherwise, after the retries, throws MLLPException:
        /// 670 NAK, 2040 no acknowledgement within Timeout, 2041 AE/CE, 2042 AR/CR, 1120
        /// connection lost, a socket error; 2001 for an empty message or one containing the
        /// framing bytes. Events (also for messages queued earlier) are raised on this thread
        /// meanwhile.</summary>
        public SendResult Send(byte[] data)
        {
            if (data == null) throw new ArgumentNullException("data");
            var r = new NativeSendResult { AckKind = (int)AckKind.None };
            int rc = Native.mllp_client_send(_h, NonEmpty(data), new UIntPtr((uint)data.Length), ref r);
            GC.KeepAlive(this);
            Native.Check(rc);
            return new SendResult(r.MessageId, (AckKind)r.AckKind, (int)r.Attempts);
        }

        /// <summary><see cref="Send(byte[])"/> of the message in <see cref="TextEncoding"/>
        /// (segments separated by "\r").</summary>
        public SendResult Send(string message)
        {
            if (message == null) throw new ArgumentNullException("message");
            return Send(_encoding.GetBytes(message));
        }

        /// <summary>Queues a message and returns its id at once. It is sent, and its SendDone
        /// event raised, inside later <see cref="DoEvents"/> calls (or a blocking call), in
        /// queue order.</summary>
        public ulong Enqueue(byte[] data)
        {
            if (data == null) throw new ArgumentNullException("data");
            ulong id;
            int rc = Native.mllp_client_send_async(_h, NonEmpty(data), new UIntPtr((uint)data.Length), out id);
            GC.KeepAlive(this);
            Native.Check(rc);
            return id;
        }

        /// <summary><see cref="Enqueue(byte[])"/> of the message in <see cref="TextEncoding"/>.</summary>
        public ulong Enqueue(string message)
        {
            if (message == null) throw new ArgumentNullException("message");
            return Enqueue(_encoding.GetBytes(message));
        }

        /// <summary>Queues a message and returns a task completed by its SendDone event: with
        /// its <see cref="SendResult"/>, or faulted with an <see cref="MLLPException"/> (the
        /// SendDone ResultCode and Description). The client has no thread: the task completes
        /// only while some thread calls <see cref="DoEvents"/> (or a blocking method) on this
        /// client. Continuations run asynchronously, never inside the native callback. Tasks
        /// still pending at Dispose fault with MLLPException 672 (Interrupted: the SendDone that
        /// Dispose raises for every unfinished message).</summary>
        public Task<SendResult> SendAsync(byte[] data)
        {
            if (data == null) throw new ArgumentNullException("data");
            var tcs = new TaskCompletionSource<SendResult>(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_tasks)
            {
                ulong id = Enqueue(data);
                _tasks[id] = tcs;
            }
            return tcs.Task;
        }

        /// <summary><see cref="SendAsync(byte[])"/> of the message in <see cref="TextEncoding"/>.</summary>
        public Task<SendResult> SendAsync(string message)
        {
            if (message == null) throw new ArgumentNullException("message");
            return SendAsync(_encoding.GetBytes(message));
        }

        /// <summary>Drives I/O and raises events on this thread until nothing is queued or in
        /// flight, or timeoutMs have passed. Returns the number of messages still queued or
        /// awaiting their acknowledgement (0: all done).</summary>
        public int DoEvents(int timeoutMs = 100)
        {
            if (timeoutMs < 0) throw new ArgumentOutOfRangeException("timeoutMs");
            UIntPtr n;
            int rc = Native.mllp_client_do_events(_h, (uint)timeoutMs, out n);
            GC.KeepAlive(this);
            Native.Check(rc);
            return (int)Math.Min(n.ToUInt64(), int.MaxValue);
        }

        /// <summary>Disconnects (Disconnected is raised when connected) and frees the client.
        /// Throws MLLPException 2006 from inside this client's handlers.</summary>
        public void Dispose()
        {
            if (_h.IsClosed) return;
            if (IsDispatchingOnThisThread())
                throw new MLLPException(MLLPException.Reentrant,
                    "Dispose cannot be called from one of this client's event handlers");
            try
            {
                byte c;
                if (Native.mllp_client_get_connected(_h, out c) == Native.MLLP_OK && c != 0)
                    Native.mllp_client_disconnect(_h);
            }
            catch (ObjectDisposedException) { return; }
            _h.FireEventsOnFree = true;
            _h.Dispose();
            GC.KeepAlive(this);
            List<TaskCompletionSource<SendResult>> left;
            lock (_tasks) { left = new List<TaskCompletionSource<SendResult>>(_tasks.Values); _tasks.Clear(); }
            foreach (var t in left) t.TrySetException(new ObjectDisposedException("MLLPClient"));
        }

        // ------------------------------------------------------------------ internals

        private static byte[] NonEmpty(byte[] b) { return b.Length == 0 ? new byte[1] : b; }

        private void Enter()
        {
            var l = t_dispatching;
            if (l == null) t_dispatching = l = new List<MLLPClient>(2);
            l.Add(this);
        }

        private void Leave()
        {
            var l = t_dispatching;
            if (l == null) return;
            int i = l.LastIndexOf(this);
            if (i >= 0) l.RemoveAt(i);
        }

        private bool IsDispatchingOnThisThread()
        {
            var l = t_dispatching;
            return l != null && l.Contains(this);
        }

        private void Raise<T>(EventHandler<T> handlers, T args, ulong id, string name) where T : EventArgs
        {
            if (handlers == null) return;
            foreach (var d in handlers.GetInvocationList())
            {
                try { ((EventHandler<T>)d)(this, args); }
                catch (Exception ex) { ReportHandlerException(ex, id, name); }
            }
        }

        private void ReportHandlerException(Exception ex, ulong id, string name)
        {
            var errorHandlers = Error;
            if (errorHandlers == null || t_reportingHandlerError || name == "Error")
            {
                MLLPServer.TraceFailure(name, ex);
                return;
            }
            t_reportingHandlerError = true;
            try
            {
                var a = new MLLPClientErrorEventArgs(id, MLLPException.Panic,
                    "exception in the " + name + " handler: " + ex.GetType().Name + ": " + ex.Message, ex);
                foreach (var d in errorHandlers.GetInvocationList())
                {
                    try { ((EventHandler<MLLPClientErrorEventArgs>)d)(this, a); }
                    catch (Exception ex2) { MLLPServer.TraceFailure("Error", ex2); }
                }
            }
            finally { t_reportingHandlerError = false; }
        }

        private static string Str(IntPtr p) { return Native.PtrToUtf8(p) ?? string.Empty; }

        // ---- trampolines: run on the thread inside a call of this client; never throw ----

        private unsafe void NConnected(StatusEvent* e)
        {
            Enter();
            try
            {
                var h = Connected;
                if (h == null) return;
                Raise(h, new MLLPClientConnectedEventArgs(e->ConnectionId, e->StatusCode, Str(e->Description)),
                      e->ConnectionId, "Connected");
            }
            catch (Exception ex) { MLLPServer.TraceFailure("Connected", ex); }
            finally { Leave(); }
        }

        private unsafe void NDisconnected(StatusEvent* e)
        {
            Enter();
            try
            {
                var h = Disconnected;
                if (h == null) return;
                Raise(h, new MLLPClientDisconnectedEventArgs(e->ConnectionId, e->StatusCode, Str(e->Description)),
                      e->ConnectionId, "Disconnected");
            }
            catch (Exception ex) { MLLPServer.TraceFailure("Disconnected", ex); }
            finally { Leave(); }
        }

        private unsafe void NAckIn(ClientAckInEvent* e)
        {
            Enter();
            try
            {
                var h = AckIn;
                if (h == null) return;
                var a = new MLLPClientAckInEventArgs(e->ConnectionId, e->MessageId, (AckKind)e->Kind, Str(e->ControlId),
                                                     Str(e->Text), Native.CopyBytes(e->Data, e->Len), e->Matched != 0);
                Raise(h, a, e->ConnectionId, "AckIn");
            }
            catch (Exception ex) { MLLPServer.TraceFailure("AckIn", ex); }
            finally { Leave(); }
        }

        private unsafe void NSendDone(SendDoneEvent* e)
        {
            Enter();
            try
            {
                ulong mid = e->MessageId;
                int code = e->ResultCode;
                string description = Str(e->Description);
                var kind = (AckKind)e->AckKind;
                int attempts = (int)e->Attempts;
                var h = SendDone;
                if (h != null)
                    Raise(h, new MLLPClientSendDoneEventArgs(e->ConnectionId, mid, Str(e->ControlId), code, description,
                                                             kind, attempts), e->ConnectionId, "SendDone");
                TaskCompletionSource<SendResult> tcs = null;
                lock (_tasks)
                {
                    if (_tasks.TryGetValue(mid, out tcs)) _tasks.Remove(mid);
                }
                if (tcs != null)
                {
                    if (code == 0) tcs.TrySetResult(new SendResult(mid, kind, attempts));
                    else tcs.TrySetException(new MLLPException(code, description));
                }
            }
            catch (Exception ex) { MLLPServer.TraceFailure("SendDone", ex); }
            finally { Leave(); }
        }

        private unsafe void NError(ErrorEvent* e)
        {
            Enter();
            try
            {
                var h = Error;
                if (h == null) return;
                Raise(h, new MLLPClientErrorEventArgs(e->ConnectionId, e->ErrorCode, Str(e->Description), null),
                      e->ConnectionId, "Error");
            }
            catch (Exception ex) { MLLPServer.TraceFailure("Error", ex); }
            finally { Leave(); }
        }

        private unsafe void NLog(LogEvent* e)
        {
            Enter();
            try
            {
                var h = Log;
                if (h == null) return;
                Raise(h, new MLLPClientLogEventArgs(e->ConnectionId, e->LogLevel, Str(e->Message), Str(e->LogType)),
                      e->ConnectionId, "Log");
            }
            catch (Exception ex) { MLLPServer.TraceFailure("Log", ex); }
            finally { Leave(); }
        }

        private unsafe void NSslServerAuthentication(SslServerAuthenticationEvent* e)
        {
            Enter();
            try
            {
                var h = SSLServerAuthentication;
                if (h == null) return;
                var a = new MLLPClientSSLServerAuthenticationEventArgs(e->ConnectionId,
                    Native.CopyBytes(e->CertEncoded, e->CertEncodedLen), Str(e->CertSubject), Str(e->CertIssuer),
                    Str(e->Status), e->Accept != 0);
                Raise(h, a, e->ConnectionId, "SSLServerAuthentication");
                e->Accept = a.Accept ? (byte)1 : (byte)0;
            }
            catch (Exception ex) { MLLPServer.TraceFailure("SSLServerAuthentication", ex); }
            finally { Leave(); }
        }

        private unsafe void NSslStatus(SslStatusEvent* e)
        {
            Enter();
            try
            {
                var h = SSLStatus;
                if (h == null) return;
                Raise(h, new MLLPClientSSLStatusEventArgs(e->ConnectionId, Str(e->Message)), e->ConnectionId, "SSLStatus");
            }
            catch (Exception ex) { MLLPServer.TraceFailure("SSLStatus", ex); }
            finally { Leave(); }
        }

        /// <summary>The callbacks handed to the library: static readonly fields, so the
        /// delegates (and their native thunks) can never be collected; each finds its client
        /// through the user pointer (a weak GCHandle).</summary>
        private static unsafe class Thunks
        {
            internal static readonly Native.StatusCb Connected = (u, e) => { OnConnected(u, e); };
            internal static readonly Native.StatusCb Disconnected = (u, e) => { OnDisconnected(u, e); };
            internal static readonly Native.ClientAckInCb AckIn = (u, e) => { OnAckIn(u, e); };
            internal static readonly Native.SendDoneCb SendDone = (u, e) => { OnSendDone(u, e); };
            internal static readonly Native.ErrorCb Error = (u, e) => { OnError(u, e); };
            internal static readonly Native.LogCb Log = (u, e) => { OnLog(u, e); };
            internal static readonly Native.SslServerAuthenticationCb SslServerAuthentication =
                (u, e) => { OnSslServerAuthentication(u, e); };
            internal static readonly Native.SslStatusCb SslStatus = (u, e) => { OnSslStatus(u, e); };
            internal static readonly Native.ReleaseCb ReleaseUser = u =>
            {
                try { if (u != IntPtr.Zero) GCHandle.FromIntPtr(u).Free(); }
                catch (Exception ex) { MLLPServer.TraceFailure("ReleaseUser", ex); }
            };

            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnConnected(IntPtr u, StatusEvent* e) { var c = From(u); if (c != null) c.NConnected(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnDisconnected(IntPtr u, StatusEvent* e) { var c = From(u); if (c != null) c.NDisconnected(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnAckIn(IntPtr u, ClientAckInEvent* e) { var c = From(u); if (c != null) c.NAckIn(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnSendDone(IntPtr u, SendDoneEvent* e) { var c = From(u); if (c != null) c.NSendDone(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnError(IntPtr u, ErrorEvent* e) { var c = From(u); if (c != null) c.NError(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnLog(IntPtr u, LogEvent* e) { var c = From(u); if (c != null) c.NLog(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnSslServerAuthentication(IntPtr u, SslServerAuthenticationEvent* e) { var c = From(u); if (c != null) c.NSslServerAuthentication(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnSslStatus(IntPtr u, SslStatusEvent* e) { var c = From(u); if (c != null) c.NSslStatus(e); }

            private static MLLPClient From(IntPtr user)
            {
                try { return user == IntPtr.Zero ? null : GCHandle.FromIntPtr(user).Target as MLLPClient; }
                catch (Exception ex) { MLLPServer.TraceFailure("callback", ex); return null; }
            }
        }
    }
}
