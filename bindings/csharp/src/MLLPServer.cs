using System;
using System.Collections.Generic;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Mllp
{
    /// <summary>
    /// An MLLP (HL7 v2 over TCP) server: the reference's MLLPServer component over the native
    /// mllp library (libmllp.so / mllp.dll / libmllp.dylib).
    /// </summary>
    /// <remarks>
    /// Threads: by default events are raised on the library's reactor thread, one at a time.
    /// A handler may call back into the server (queued operations: Send with Timeout 0,
    /// Disconnect, Config, property reads); Dispose and a synchronous Send (Timeout &gt; 0)
    /// throw <see cref="MLLPException"/> 2006 there. With Config("EventMode=DoEvents") (set
    /// before listening) events are queued and raised on the thread that calls
    /// <see cref="DoEvents()"/>.
    /// Exceptions thrown by handlers never reach native code: they are reported through the
    /// <see cref="Error"/> event (ErrorCode 2007, <see cref="MLLPServerErrorEventArgs.Exception"/> set),
    /// or to <see cref="Trace"/> when they come from an Error handler.
    /// Lifetime: a listening server is kept alive by the binding even when unreferenced; call
    /// Dispose (or Shutdown/StopListening) to let it go. Servers still alive at process exit
    /// are freed from AppDomain.ProcessExit so the reactor thread stops before the runtime.
    /// </remarks>
    public sealed class MLLPServer : IDisposable
    {
        private readonly MllpServerHandle _h;
        private readonly ConcurrentDictionary<ulong, MLLPConnection> _conns =
            new ConcurrentDictionary<ulong, MLLPConnection>();
        private readonly MLLPConnectionMap _map;
        private readonly object _rootLock = new object();
        private GCHandle _root;
        private volatile Encoding _encoding = new UTF8Encoding(false);
        /// <summary>Certificates chosen in SSLConnectionRequest, by connection: their handles
        /// (DangerousAddRef'd) stay valid until the connection's Disconnected event.</summary>
        private readonly ConcurrentDictionary<ulong, Presented> _presented =
            new ConcurrentDictionary<ulong, Presented>();

        [ThreadStatic] private static List<MLLPServer> t_dispatching;
        [ThreadStatic] private static bool t_reportingHandlerError;

        /// <summary>The native library's version string, e.g. "0.1.0".</summary>
        public static string LibraryVersion
        {
            get { return Native.PtrToUtf8(Native.mllp_version()); }
        }

        /// <summary>Creates a server with the reference's defaults, not listening.</summary>
        public unsafe MLLPServer()
        {
            _h = Native.mllp_server_new();
            if (_h == null || _h.IsInvalid)
                throw new OutOfMemoryException("mllp_server_new returned NULL");
            _map = new MLLPConnectionMap(this);

            // Static delegates (never collected) find this server through the user pointer:
            // a weak GCHandle, so the registration does not keep the server alive. The library
            // releases it (ReleaseUser) after the last callback that could receive it.
            IntPtr user = GCHandle.ToIntPtr(GCHandle.Alloc(this, GCHandleType.Weak));
            int rc;
            try { rc = Native.mllp_server_set_user_data(_h, user, Thunks.ReleaseUser); }
            catch { GCHandle.FromIntPtr(user).Free(); _h.Dispose(); throw; }
            if (rc != Native.MLLP_OK) { GCHandle.FromIntPtr(user).Free(); _h.Dispose(); throw MLLPException.FromCode(rc); }
            Native.Check(Native.mllp_server_on_connection_request(_h, Thunks.ConnectionRequest));
            Native.Check(Native.mllp_server_on_connected(_h, Thunks.Connected));
            Native.Check(Native.mllp_server_on_disconnected(_h, Thunks.Disconnected));
            // StartTransfer, Transfer, EndTransfer and Message are registered while they have a
            // subscriber (see SyncMessageCallbacks): they fire for every message.
            Native.Check(Native.mllp_server_on_ack_out(_h, Thunks.AckOut));
            Native.Check(Native.mllp_server_on_ack_in(_h, Thunks.AckIn));
            Native.Check(Native.mllp_server_on_duplicate(_h, Thunks.Duplicate));
            Native.Check(Native.mllp_server_on_error(_h, Thunks.Error));
            Native.Check(Native.mllp_server_on_log(_h, Thunks.Log));
            Native.Check(Native.mllp_server_on_ssl_client_authentication(_h, Thunks.SslClientAuthentication));
            Native.Check(Native.mllp_server_on_ssl_connection_request(_h, Thunks.SslConnectionRequest));
            Native.Check(Native.mllp_server_on_ssl_status(_h, Thunks.SslStatus));
            // No thread-start hook: Mono attaches the reactor thread at its first callback. An
            // attached thread's native stack is scanned conservatively, and a reactor that only
            // listened (no callback ever ran) attached up front kept its abandoned server alive.
            Native.Check(Native.mllp_server_on_thread_stop(_h, Thunks.ThreadStop));
            LiveServers.Add(_h);
        }

        internal MllpServerHandle Handle { get { return _h; } }

        // ------------------------------------------------------------------ events

        /// <summary>A client asks to connect; set Accept to false to refuse it.</summary>
        public event EventHandler<MLLPServerConnectionRequestEventArgs> ConnectionRequest;
        /// <summary>A connection completed (or failed).</summary>
        public event EventHandler<MLLPServerConnectedEventArgs> Connected;
        /// <summary>A connection closed.</summary>
        public event EventHandler<MLLPServerDisconnectedEventArgs> Disconnected;
        /// <summary>Incoming HL7 data begins.</summary>
        public event EventHandler<MLLPServerStartTransferEventArgs> StartTransfer
        {
            add { lock (_subLock) { _startTransfer += value; SyncMessageCallbacks(); } }
            remove { lock (_subLock) { _startTransfer -= value; SyncMessageCallbacks(); } }
        }
        /// <summary>A piece of incoming HL7 data.</summary>
        public event EventHandler<MLLPServerTransferEventArgs> Transfer
        {
            add { lock (_subLock) { _transfer += value; SyncMessageCallbacks(); } }
            remove { lock (_subLock) { _transfer -= value; SyncMessageCallbacks(); } }
        }
        /// <summary>Incoming HL7 data is complete (AckOut follows).</summary>
        public event EventHandler<MLLPServerEndTransferEventArgs> EndTransfer
        {
            add { lock (_subLock) { _endTransfer += value; SyncMessageCallbacks(); } }
            remove { lock (_subLock) { _endTransfer -= value; SyncMessageCallbacks(); } }
        }
        /// <summary>Extension: a whole incoming message (after EndTransfer, before AckOut);
        /// once per message of a batch with ProcessBatch.</summary>
        public event EventHandler<MLLPServerMessageEventArgs> Message
        {
            add { lock (_subLock) { _message += value; SyncMessageCallbacks(); } }
            remove { lock (_subLock) { _message -= value; SyncMessageCallbacks(); } }
        }
        /// <summary>Extension: a message already accepted arrived again (DuplicateWindow
        /// setting) and was answered with the original's acknowledgement, not delivered.</summary>
        public event EventHandler<MLLPServerDuplicateEventArgs> Duplicate;

        // The per-message events' native callbacks are registered with the library only while
        // the event has a subscriber (a native-to-managed transition per event and message
        // costs even when nobody listens). Under _subLock; takes effect for the next event.
        private readonly object _subLock = new object();
        private volatile EventHandler<MLLPServerStartTransferEventArgs> _startTransfer;
        private volatile EventHandler<MLLPServerTransferEventArgs> _transfer;
        private volatile EventHandler<MLLPServerEndTransferEventArgs> _endTransfer;
        private volatile EventHandler<MLLPServerMessageEventArgs> _message;
        private bool _regStart, _regTransfer, _regEnd, _regMessage;

        private void SyncMessageCallbacks()
        {
            if (_h.IsClosed) return;   // no more events anyway
            try
            {
                bool on = _startTransfer != null;
                if (on != _regStart)
                {
                    Native.Check(Native.mllp_server_on_start_transfer(_h, on ? Thunks.StartTransfer : null));
                    _regStart = on;
                }
                on = _transfer != null;
                if (on != _regTransfer)
                {
                    Native.Check(Native.mllp_server_on_transfer(_h, on ? Thunks.Transfer : null));
                    _regTransfer = on;
                }
                on = _endTransfer != null;
                if (on != _regEnd)
                {
                    Native.Check(Native.mllp_server_on_end_transfer(_h, on ? Thunks.EndTransfer : null));
                    _regEnd = on;
                }
                on = _message != null;
                if (on != _regMessage)
                {
                    Native.Check(Native.mllp_server_on_message(_h, on ? Thunks.Message : null));
                    _regMessage = on;
                }
            }
            catch (ObjectDisposedException) { /* disposed meanwhile: no more events */ }
        }
        /// <summary>A client acknowledged data the server sent.</summary>
        public event EventHandler<MLLPServerAckInEventArgs> AckIn;
        /// <summary>An acknowledgement is about to be sent; set Accept to false for a NAK.</summary>
        public event EventHandler<MLLPServerAckOutEventArgs> AckOut;
        /// <summary>An error during data delivery (or an exception thrown by a handler).</summary>
        public event EventHandler<MLLPServerErrorEventArgs> Error;
        /// <summary>Log lines (see the LogLevel setting).</summary>
        public event EventHandler<MLLPServerLogEventArgs> Log;
        /// <summary>A TLS client presented its certificate (SSLAuthenticateClients on); set
        /// Accept to override the library's verdict.</summary>
        public event EventHandler<MLLPServerSSLClientAuthenticationEventArgs> SSLClientAuthentication;
        /// <summary>A TLS ClientHello arrived; a handler may choose the certificate presented.</summary>
        public event EventHandler<MLLPServerSSLConnectionRequestEventArgs> SSLConnectionRequest;
        /// <summary>Progress of a secure connection.</summary>
        public event EventHandler<MLLPServerSSLStatusEventArgs> SSLStatus;

        // ------------------------------------------------------------------ properties

        /// <summary>Encoding of the string forms InputData/OutputData (default UTF-8, no BOM).
        /// The byte[] forms (InputDataB/OutputDataB) are passed through untouched.</summary>
        public Encoding TextEncoding
        {
            get { return _encoding; }
            set { if (value == null) throw new ArgumentNullException("value"); _encoding = value; }
        }

        /// <summary>The interface listened on ("" = every interface); while listening, the
        /// bound address. Cannot change while listening (107).</summary>
        public string LocalHost
        {
            get { return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_server_get_local_host(_h, b, ref l)); }
            set { Native.Check(Native.mllp_server_set_local_host(_h, Native.Utf8z(value ?? string.Empty))); }
        }

        /// <summary>The TCP port (0 = any free port; while listening, the real port).
        /// Cannot change while listening (106).</summary>
        public int LocalPort
        {
            get { ushort v; Native.Check(Native.mllp_server_get_local_port(_h, out v)); return v; }
            set
            {
                if (value < 0 || value > 65535) throw new ArgumentOutOfRangeException("value", "LocalPort must be 0..65535");
                Native.Check(Native.mllp_server_set_local_port(_h, (ushort)value));
            }
        }

        /// <summary>True while the server accepts connections.</summary>
        public bool Listening
        {
            get { byte v; Native.Check(Native.mllp_server_get_listening(_h, out v)); return v != 0; }
        }

        /// <summary>The Timeout (seconds) given to new connections; 0 = asynchronous sends.</summary>
        public int DefaultTimeout
        {
            get { uint v; Native.Check(Native.mllp_server_get_default_timeout(_h, out v)); return (int)Math.Min(v, int.MaxValue); }
            set
            {
                if (value < 0) throw new ArgumentOutOfRangeException("value", "DefaultTimeout cannot be negative");
                Native.Check(Native.mllp_server_set_default_timeout(_h, (uint)value));
            }
        }

        /// <summary>When true, SO_KEEPALIVE is set on connections accepted from now on.</summary>
        public bool KeepAlive
        {
            get { byte v; Native.Check(Native.mllp_server_get_keep_alive(_h, out v)); return v != 0; }
            set { Native.Check(Native.mllp_server_set_keep_alive(_h, value ? (byte)1 : (byte)0)); }
        }

        /// <summary>The MLLP version: 1 or 2 (default 2). Version 1 sends no acknowledgements.</summary>
        public int Version
        {
            get { int v; Native.Check(Native.mllp_server_get_version(_h, out v)); return v; }
            set { Native.Check(Native.mllp_server_set_version(_h, value)); }
        }

        /// <summary>SSLEnabled: accept TLS connections (default false; takes effect at the next
        /// StartListening).</summary>
        public bool SSLEnabled
        {
            get { byte v; Native.Check(Native.mllp_server_get_ssl_enabled(_h, out v)); return v != 0; }
            set { Native.Check(Native.mllp_server_set_ssl_enabled(_h, value ? (byte)1 : (byte)0)); }
        }

        /// <summary>SSLAuthenticateClients: ask TLS clients for a certificate (see the
        /// SSLClientAuthentication event and the SSLClientCACerts setting); takes effect at the
        /// next StartListening.</summary>
        public bool SSLAuthenticateClients
        {
            get { byte v; Native.Check(Native.mllp_server_get_ssl_authenticate_clients(_h, out v)); return v != 0; }
            set { Native.Check(Native.mllp_server_set_ssl_authenticate_clients(_h, value ? (byte)1 : (byte)0)); }
        }

        /// <summary>SSLCert: the certificate (with its private key) presented to TLS clients.
        /// The getter returns a new <see cref="Certificate"/> each time (dispose it), or null when
        /// none is set. The setter (null clears) makes the server keep its own reference, so the
        /// certificate may be disposed afterwards; it is checked at the next StartListening (no
        /// private key, key mismatch or expired: MLLPException 2020 there). A disposed
        /// certificate throws ObjectDisposedException.</summary>
        public Certificate SSLCert
        {
            get
            {
                CertificateHandle ch;
                int rc = Native.mllp_server_get_ssl_cert(_h, out ch);
                if (rc != Native.MLLP_OK)
                {
                    var ex = MLLPException.FromCode(rc);
                    if (ch != null) ch.Dispose();
                    throw ex;
                }
                if (ch == null || ch.IsInvalid)
                {
                    if (ch != null) ch.Dispose();
                    return null;
                }
                return Certificate.Adopt(ch);
            }
            set
            {
                if (value == null) { Native.Check(Native.mllp_server_set_ssl_cert(_h, IntPtr.Zero)); return; }
                bool added = false;
                try
                {
                    value.Handle.DangerousAddRef(ref added);   // ObjectDisposedException once disposed
                    Native.Check(Native.mllp_server_set_ssl_cert(_h, value.Handle.DangerousGetHandle()));
                }
                finally { if (added) value.Handle.DangerousRelease(); }
            }
        }

        /// <summary>The connected clients, by connection id.</summary>
        public MLLPConnectionMap Connections { get { return _map; } }

        /// <summary>Number of open connections.</summary>
        public int ConnectionCount
        {
            get { UIntPtr v; Native.Check(Native.mllp_server_get_connection_count(_h, out v)); return (int)v.ToUInt64(); }
        }

        /// <summary>Extension: the server's metrics now (always on; reading takes no lock):
        /// connections, messages, bytes, acknowledgements, errors, TLS handshakes and the
        /// acknowledgement latency. Counted since the server was created.</summary>
        public MLLPServerMetrics Metrics
        {
            get { MetricsNative m; Native.Check(Native.mllp_server_get_metrics(_h, out m)); return new MLLPServerMetrics(m); }
        }

        /// <summary>Extension: the metrics in the Prometheus text exposition format 0.0.4 (for
        /// a /metrics endpoint), with errors per code, TLS failures per reason and the
        /// acknowledgement latency histogram.</summary>
        public string MetricsText
        {
            get { return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_server_get_metrics_text(_h, b, ref l)); }
        }

        /// <summary>Extension: DuplicateCount: how many duplicates (DuplicateWindow setting) have
        /// been answered with the original's acknowledgement so far.</summary>
        public long DuplicateCount
        {
            get { ulong v; Native.Check(Native.mllp_server_get_duplicate_count(_h, out v)); return (long)Math.Min(v, (ulong)long.MaxValue); }
        }

        // ------------------------------------------------------------------ methods

        /// <summary>Config("Name=Value") sets a setting and returns ""; Config("Name") returns
        /// its value. Names are case-insensitive. Throws MLLPException 2004 (unknown setting),
        /// 2003 (no meaning for this server) or 2005 (invalid value).</summary>
        public string Config(string configurationString)
        {
            if (configurationString == null) throw new ArgumentNullException("configurationString");
            byte[] setting = Native.Utf8z(configurationString);
            if (configurationString.IndexOf('=') >= 0)
            {
                UIntPtr zero = UIntPtr.Zero;
                Native.Check(Native.mllp_server_config(_h, setting, null, ref zero));
                return string.Empty;
            }
            return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_server_config(_h, setting, b, ref l));
        }

        /// <summary>Binds LocalHost:LocalPort and starts accepting connections.</summary>
        public void StartListening()
        {
            Native.Check(Native.mllp_server_start_listening(_h));
            Root(true);
        }

        /// <summary>Stops accepting new connections; existing ones stay open.</summary>
        public void StopListening()
        {
            Native.Check(Native.mllp_server_stop_listening(_h));
            Root(false);
        }

        /// <summary>StopListening, then disconnect every client (Disconnected fires for each).</summary>
        public void Shutdown()
        {
            Native.Check(Native.mllp_server_shutdown(_h));
            Root(false);
        }

        /// <summary>Shutdown, then every property and setting back to its default. Event
        /// handlers stay.</summary>
        public void Reset()
        {
            Native.Check(Native.mllp_server_reset(_h));
            Root(false);
        }

        /// <summary>Closes a connection (queued replies are flushed first when possible).</summary>
        public void Disconnect(string connectionId) { Disconnect(ParseId(connectionId)); }
        public void Disconnect(ulong connectionId)
        {
            Native.Check(Native.mllp_server_disconnect(_h, connectionId));
        }

        /// <summary>Makes a synchronous Send waiting on the connection return at once (2011).</summary>
        public void Interrupt(string connectionId) { Interrupt(ParseId(connectionId)); }
        public void Interrupt(ulong connectionId)
        {
            Native.Check(Native.mllp_server_interrupt(_h, connectionId));
        }

        /// <summary>Sends the connection's input (InputStream, else InputFileName, else
        /// InputData). With the connection's Timeout 0 returns once queued; otherwise waits for
        /// the acknowledgement (670 on a NAK, 201 on timeout).</summary>
        public void Send(string connectionId) { Send(ParseId(connectionId)); }
        public void Send(ulong connectionId)
        {
            Native.Check(Native.mllp_server_send(_h, connectionId));
        }

        /// <summary>Sends these bytes as one message without touching InputData.</summary>
        public void Send(string connectionId, byte[] data) { Send(ParseId(connectionId), data); }
        public void Send(ulong connectionId, byte[] data)
        {
            if (data == null) throw new ArgumentNullException("data");
            Native.Check(Native.mllp_server_send_bytes(_h, connectionId, data, new UIntPtr((uint)data.Length)));
        }

        /// <summary>Extension: decides a message whose AckOut handler set
        /// <see cref="MLLPServerAckOutEventArgs.Defer"/>: accept sends an ACK (HL7 ack mode: MSA-1
        /// AA), otherwise a NAK (HL7 ack mode: rejectCode). Any thread, also inside handlers;
        /// queued. A messageSeq that is not awaiting a decision is ignored. MLLPException 2002
        /// when the connection has closed (the message was never acknowledged).</summary>
        public void Acknowledge(string connectionId, long messageSeq, bool accept, RejectCode rejectCode)
        {
            Acknowledge(ParseId(connectionId), messageSeq, accept, rejectCode);
        }
        public void Acknowledge(ulong connectionId, long messageSeq, bool accept, RejectCode rejectCode)
        {
            if (messageSeq < 0) throw new ArgumentOutOfRangeException("messageSeq");
            Native.Check(Native.mllp_server_acknowledge(_h, connectionId, (ulong)messageSeq, accept ? (byte)1 : (byte)0,
                                                        (int)rejectCode));
        }
        /// <summary>Acknowledge with RejectCode.AE for a negative acknowledgement.</summary>
        public void Acknowledge(string connectionId, long messageSeq, bool accept)
        {
            Acknowledge(ParseId(connectionId), messageSeq, accept, RejectCode.AE);
        }
        public void Acknowledge(ulong connectionId, long messageSeq, bool accept)
        {
            Acknowledge(connectionId, messageSeq, accept, RejectCode.AE);
        }

        /// <summary>Extension: decides a message whose AckOut handler set
        /// <see cref="MLLPServerAckOutEventArgs.Defer"/> by sending exactly <paramref name="reply"/>
        /// as its acknowledgement (framed by the library): in HL7 ack mode an unframed HL7 ACK
        /// message, in MLLP mode the one ACK (0x06) or NAK (0x15) byte. Same ordering rules as
        /// <see cref="Acknowledge(ulong, long, bool, RejectCode)"/>. A positive reply (ACK byte,
        /// MSA-1 AA or CA) is remembered by the DuplicateWindow setting.</summary>
        public void AcknowledgeWith(string connectionId, long messageSeq, byte[] reply)
        {
            AcknowledgeWith(ParseId(connectionId), messageSeq, reply);
        }
        public void AcknowledgeWith(ulong connectionId, long messageSeq, byte[] reply)
        {
            if (reply == null) throw new ArgumentNullException("reply");
            if (messageSeq < 0) throw new ArgumentOutOfRangeException("messageSeq");
            Native.Check(Native.mllp_server_acknowledge_with(_h, connectionId, (ulong)messageSeq, NonEmpty(reply),
                                                             new UIntPtr((uint)reply.Length)));
        }

        /// <summary>Extension: sends an HL7 application acknowledgement (AA, AE or AR) for
        /// <paramref name="message"/>, a message received on that connection, as a message of its
        /// own built from its MSH, when its MSH-16 asks for one: AL always, ER only when the code
        /// is not AA, SU only when it is AA, NE and empty never. <paramref name="text"/> (may be
        /// null) is MSA-3. Returns true when sent, false when MSH-16 said no.</summary>
        public bool SendAppAck(string connectionId, byte[] message, AckCode code, string text = null)
        {
            return SendAppAck(ParseId(connectionId), message, code, text);
        }
        public bool SendAppAck(ulong connectionId, byte[] message, AckCode code, string text = null)
        {
            if (message == null) throw new ArgumentNullException("message");
            byte sent;
            Native.Check(Native.mllp_server_send_app_ack(_h, connectionId, NonEmpty(message),
                                                         new UIntPtr((uint)message.Length), (int)code,
                                                         Native.Utf8z(text), out sent));
            return sent != 0;
        }

        /// <summary>Extension: builds an HL7 ACK (unframed) for <paramref name="message"/> with
        /// MSA-1 <paramref name="code"/> and optional MSA-3 <paramref name="text"/>, MSH-7 now and
        /// a fresh MSH-10, unique across connections, servers and restarts (every call makes a
        /// new one).</summary>
        public static byte[] BuildAck(byte[] message, AckCode code, string text = null)
        {
            if (message == null) throw new ArgumentNullException("message");
            byte[] m = NonEmpty(message);
            var mlen = new UIntPtr((uint)message.Length);
            byte[] t = Native.Utf8z(text);
            // Every call makes a new control id, so the size asked for first is a hint only: a
            // margin covers a longer id next time, and a buffer still too small is retried.
            byte[] buf = null;
            for (int attempt = 0; attempt < 8; attempt++)
            {
                UIntPtr len = new UIntPtr(buf == null ? 0u : (uint)buf.Length);
                int rc = Native.mllp_hl7_build_ack(m, mlen, (int)code, t, buf, ref len);
                ulong n = len.ToUInt64();
                if (rc == Native.MLLP_OK && buf != null)
                {
                    if (n == (ulong)buf.Length) return buf;
                    var r = new byte[n];
                    Array.Copy(buf, r, (long)n);
                    return r;
                }
                if (rc != Native.MLLP_OK && rc != Native.MLLP_ERR_BUFFER_TOO_SMALL) throw MLLPException.FromCode(rc);
                if (n > int.MaxValue - 64) throw new OverflowException("value larger than 2 GB");
                buf = new byte[n + 32];
            }
            throw new MLLPException(Native.MLLP_ERR_BUFFER_TOO_SMALL, "the ACK kept growing while being built");
        }

        /// <summary>An array the marshaller passes as a valid pointer even when empty (the
        /// length is passed apart).</summary>
        private static byte[] NonEmpty(byte[] b) { return b.Length == 0 ? new byte[1] : b; }

        /// <summary>Processes queued events (EventMode=DoEvents), waiting up to 100 ms for the first.</summary>
        public void DoEvents() { DoEvents(100); }

        /// <summary>Processes queued events on this thread, waiting up to timeoutMs for the
        /// first; returns how many were delivered.</summary>
        public int DoEvents(int timeoutMs)
        {
            if (timeoutMs < 0) throw new ArgumentOutOfRangeException("timeoutMs");
            UIntPtr n;
            Enter();
            try { Native.Check(Native.mllp_server_do_events(_h, (uint)timeoutMs, out n)); }
            finally { Leave(); }
            return (int)n.ToUInt64();
        }

        /// <summary>Shuts the server down (Disconnected fires for each client), stops its
        /// thread and frees it. Throws MLLPException 2006 from inside this server's handlers.</summary>
        public void Dispose()
        {
            if (_h.IsClosed) return;
            if (IsDispatchingOnThisThread())
                throw new MLLPException(MLLPException.Reentrant,
                    "Dispose cannot be called from one of this server's event handlers");
            _h.FireEventsOnFree = true;
            _h.Dispose();
            Root(false);
            ReleasePresented();
        }

        // ------------------------------------------------------------------ internals

        /// <summary>A connection id string as the reference writes it: the decimal number,
        /// digits only, no sign, space or leading zero. Anything else names no connection.</summary>
        internal static bool TryParseId(string connectionId, out ulong id)
        {
            if (connectionId != null && connectionId.Length > 0 && connectionId[0] != '0'
                && ulong.TryParse(connectionId, NumberStyles.None, CultureInfo.InvariantCulture, out id))
                return true;
            id = 0;
            return false;
        }

        /// <summary>For the methods taking a string id: a malformed id is an unknown one
        /// (MLLPException 2002, as the library reports for an id that is not open).</summary>
        internal static ulong ParseId(string connectionId)
        {
            if (connectionId == null) throw new ArgumentNullException("connectionId");
            ulong id;
            if (!TryParseId(connectionId, out id))
                throw new MLLPException(MLLPException.NoSuchConnection,
                    "no connection has id '" + connectionId + "' (ids are decimal numbers)");
            return id;
        }

        internal MLLPConnection GetConnection(ulong id)
        {
            return _conns.GetOrAdd(id, i => new MLLPConnection(this, i));
        }

        internal ulong[] ConnectionIds()
        {
            ulong[] ids = null;
            for (int attempt = 0; attempt < 16; attempt++)
            {
                UIntPtr len = new UIntPtr(ids == null ? 0u : (uint)ids.Length);
                int rc = Native.mllp_server_get_connections(_h, ids, ref len);
                int n = (int)len.ToUInt64();
                if (rc == Native.MLLP_OK)
                {
                    if (ids == null) return new ulong[0];
                    if (n == ids.Length) return ids;
                    var r = new ulong[n];
                    Array.Copy(ids, r, n);
                    return r;
                }
                if (rc != Native.MLLP_ERR_BUFFER_TOO_SMALL) throw MLLPException.FromCode(rc);
                if (n == 0) return new ulong[0];
                ids = new ulong[n + 4];
            }
            throw new MLLPException(Native.MLLP_ERR_BUFFER_TOO_SMALL, "connection list kept changing");
        }

        internal void PruneConnections(ulong[] open)
        {
            var set = new HashSet<ulong>(open);
            foreach (var id in _conns.Keys)
                if (!set.Contains(id)) { MLLPConnection c; _conns.TryRemove(id, out c); }
        }

        private void Root(bool on)
        {
            lock (_rootLock)
            {
                if (on && !_root.IsAllocated && !_h.IsClosed) _root = GCHandle.Alloc(this);
                else if (!on && _root.IsAllocated) _root.Free();
            }
        }

        private void Enter()
        {
            var l = t_dispatching;
            if (l == null) t_dispatching = l = new List<MLLPServer>(2);
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

        /// <summary>Invokes every subscriber; an exception from one is reported and the
        /// others still run.</summary>
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
                TraceFailure(name, ex);
                return;
            }
            t_reportingHandlerError = true;
            try
            {
                var a = new MLLPServerErrorEventArgs(id, MLLPException.Panic,
                    "exception in the " + name + " handler: " + ex.GetType().Name + ": " + ex.Message, ex);
                foreach (var d in errorHandlers.GetInvocationList())
                {
                    try { ((EventHandler<MLLPServerErrorEventArgs>)d)(this, a); }
                    catch (Exception ex2) { TraceFailure("Error", ex2); }
                }
            }
            finally { t_reportingHandlerError = false; }
        }

        internal static void TraceFailure(string where, Exception ex)
        {
            try { Trace.TraceError("Mllp: exception in the {0} handler: {1}", where, ex); }
            catch { /* never let anything reach native code */ }
        }

        // ---- trampolines: run on the reactor thread (or in DoEvents); never throw ----

        private unsafe void NConnectionRequest(ConnectionRequestEvent* e)
        {
            Enter();
            try
            {
                var h = ConnectionRequest;
                if (h == null) return;
                var a = new MLLPServerConnectionRequestEventArgs(Native.PtrToUtf8(e->Address), e->Port, e->Accept != 0);
                Raise(h, a, 0, "ConnectionRequest");
                e->Accept = a.Accept ? (byte)1 : (byte)0;
            }
            catch (Exception ex) { TraceFailure("ConnectionRequest", ex); }
            finally { Leave(); }
        }

        private unsafe void NConnected(StatusEvent* e)
        {
            Enter();
            try
            {
                var h = Connected;
                if (h == null) return;
                Raise(h, new MLLPServerConnectedEventArgs(e->ConnectionId, e->StatusCode, Native.PtrToUtf8(e->Description)),
                      e->ConnectionId, "Connected");
            }
            catch (Exception ex) { TraceFailure("Connected", ex); }
            finally { Leave(); }
        }

        private unsafe void NDisconnected(StatusEvent* e)
        {
            Enter();
            ulong id = 0;
            try
            {
                id = e->ConnectionId;
                var h = Disconnected;
                if (h != null)
                    Raise(h, new MLLPServerDisconnectedEventArgs(id, e->StatusCode, Native.PtrToUtf8(e->Description)),
                          id, "Disconnected");
            }
            catch (Exception ex) { TraceFailure("Disconnected", ex); }
            finally
            {
                MLLPConnection c;
                _conns.TryRemove(id, out c);
                Presented p;
                if (_presented.TryRemove(id, out p)) p.Release();
                Leave();
            }
        }

        private unsafe void NStartTransfer(TransferBoundaryEvent* e)
        {
            Enter();
            try
            {
                var h = _startTransfer;
                if (h == null) return;
                Raise(h, new MLLPServerStartTransferEventArgs(e->ConnectionId, (long)e->MessageSeq,
                                                              Native.PtrToUtf8(e->Charset) ?? string.Empty,
                                                              Native.PtrToUtf8(e->Encoding) ?? string.Empty),
                      e->ConnectionId, "StartTransfer");
            }
            catch (Exception ex) { TraceFailure("StartTransfer", ex); }
            finally { Leave(); }
        }

        private unsafe void NTransfer(TransferEvent* e)
        {
            Enter();
            try
            {
                var h = _transfer;
                if (h == null) return;
                var a = new MLLPServerTransferEventArgs(e->ConnectionId, (long)e->BytesTransferred, Native.CopyBytes(e->Data, e->Len));
                Raise(h, a, e->ConnectionId, "Transfer");
            }
            catch (Exception ex) { TraceFailure("Transfer", ex); }
            finally { Leave(); }
        }

        private unsafe void NEndTransfer(TransferBoundaryEvent* e)
        {
            Enter();
            try
            {
                var h = _endTransfer;
                if (h == null) return;
                Raise(h, new MLLPServerEndTransferEventArgs(e->ConnectionId, (long)e->MessageSeq,
                                                            Native.PtrToUtf8(e->Charset) ?? string.Empty,
                                                            Native.PtrToUtf8(e->Encoding) ?? string.Empty),
                      e->ConnectionId, "EndTransfer");
            }
            catch (Exception ex) { TraceFailure("EndTransfer", ex); }
            finally { Leave(); }
        }

        private unsafe void NMessage(MessageEvent* e)
        {
            Enter();
            try
            {
                var h = _message;
                if (h == null) return;
                var a = new MLLPServerMessageEventArgs(e->ConnectionId, (long)e->MessageSeq, Native.CopyBytes(e->Data, e->Len),
                                                       Native.PtrToUtf8(e->Charset) ?? string.Empty,
                                                       Native.PtrToUtf8(e->Encoding) ?? string.Empty, e->Decoded != 0);
                Raise(h, a, e->ConnectionId, "Message");
            }
            catch (Exception ex) { TraceFailure("Message", ex); }
            finally { Leave(); }
        }

        private unsafe void NDuplicate(DuplicateEvent* e)
        {
            Enter();
            try
            {
                var h = Duplicate;
                if (h == null) return;
                var a = new MLLPServerDuplicateEventArgs(e->ConnectionId, Native.CopyBytes(e->Message, e->MessageLen),
                                                         Native.PtrToUtf8(e->ControlId) ?? string.Empty,
                                                         Native.CopyBytes(e->Reply, e->ReplyLen));
                Raise(h, a, e->ConnectionId, "Duplicate");
            }
            catch (Exception ex) { TraceFailure("Duplicate", ex); }
            finally { Leave(); }
        }

        private unsafe void NAckOut(AckOutEvent* e)
        {
            Enter();
            try
            {
                var h = AckOut;
                if (h == null) return;
                var a = new MLLPServerAckOutEventArgs(e->ConnectionId, (long)e->MessageSeq, e->Accept != 0,
                                            (RejectCode)e->RejectCode, e->Message, e->MessageLen, e->Defer != 0,
                                            Native.PtrToUtf8(e->Charset) ?? string.Empty,
                                            Native.PtrToUtf8(e->Encoding) ?? string.Empty);
                try { Raise(h, a, e->ConnectionId, "AckOut"); }
                finally { a.Live = false; }
                e->Accept = a.Accept ? (byte)1 : (byte)0;
                e->RejectCode = (int)a.RejectCode;
                e->Defer = a.Defer ? (byte)1 : (byte)0;
                var reply = a.Reply;
                if (reply != null)
                {
                    // The library copies the reply after this callback returns: pinned until
                    // this thread's next reply or the server's free.
                    e->Reply = _h.PinReply(reply);
                    e->ReplyLen = new UIntPtr((uint)reply.Length);
                }
            }
            catch (Exception ex) { TraceFailure("AckOut", ex); }
            finally { Leave(); }
        }

        private unsafe void NAckIn(AckInEvent* e)
        {
            Enter();
            try
            {
                var h = AckIn;
                if (h == null) return;
                Raise(h, new MLLPServerAckInEventArgs(e->ConnectionId, e->Accepted != 0), e->ConnectionId, "AckIn");
            }
            catch (Exception ex) { TraceFailure("AckIn", ex); }
            finally { Leave(); }
        }

        private unsafe void NError(ErrorEvent* e)
        {
            Enter();
            try
            {
                var h = Error;
                if (h == null) return;
                Raise(h, new MLLPServerErrorEventArgs(e->ConnectionId, e->ErrorCode, Native.PtrToUtf8(e->Description), null),
                      e->ConnectionId, "Error");
            }
            catch (Exception ex) { TraceFailure("Error", ex); }
            finally { Leave(); }
        }

        private unsafe void NSslClientAuthentication(SslClientAuthenticationEvent* e)
        {
            Enter();
            try
            {
                var h = SSLClientAuthentication;
                if (h == null) return;
                var a = new MLLPServerSSLClientAuthenticationEventArgs(e->ConnectionId,
                    Native.CopyBytes(e->CertEncoded, e->CertEncodedLen), Native.PtrToUtf8(e->CertSubject) ?? string.Empty,
                    Native.PtrToUtf8(e->CertIssuer) ?? string.Empty, Native.PtrToUtf8(e->Status) ?? string.Empty,
                    e->Accept != 0);
                Raise(h, a, e->ConnectionId, "SSLClientAuthentication");
                e->Accept = a.Accept ? (byte)1 : (byte)0;
            }
            catch (Exception ex) { TraceFailure("SSLClientAuthentication", ex); }
            finally { Leave(); }
        }

        private unsafe void NSslConnectionRequest(SslConnectionRequestEvent* e)
        {
            Enter();
            ulong id = 0;
            try
            {
                id = e->ConnectionId;
                var h = SSLConnectionRequest;
                if (h == null) return;
                var a = new MLLPServerSSLConnectionRequestEventArgs(id,
                    Native.PtrToUtf8(e->SupportedCipherSuites) ?? string.Empty,
                    Native.PtrToUtf8(e->SupportedSignatureAlgs) ?? string.Empty);
                Raise(h, a, id, "SSLConnectionRequest");

                Certificate cert = a.Certificate;
                bool owned = false;
                if (cert == null && (a.CertStoreB != null || !string.IsNullOrEmpty(a.CertStore)))
                {
                    // The reference's way: the binding loads the certificate from the fields.
                    try
                    {
                        cert = a.CertStoreB != null
                            ? new Certificate(a.CertStoreType, a.CertStoreB, a.CertPassword, a.CertSubject)
                            : new Certificate(a.CertStoreType, a.CertStore, a.CertPassword, a.CertSubject);
                        owned = true;
                    }
                    catch (MLLPException ex)
                    {
                        ReportError(id, ex.Code, "SSLConnectionRequest: cannot load the certificate: " + ex.Message, ex);
                        return; // SSLCert is presented
                    }
                }
                if (cert == null) return; // SSLCert is presented

                // The library takes its own reference after this callback returns; until then
                // (and, to be safe, until the connection closes) the handle must stay valid even
                // if the host disposes its Certificate.
                bool added = false;
                try { cert.Handle.DangerousAddRef(ref added); }
                catch (ObjectDisposedException ex)
                {
                    ReportError(id, MLLPException.InvalidArgument,
                                "SSLConnectionRequest: the Certificate was disposed; SSLCert is presented", ex);
                    return;
                }
                var p = new Presented(cert, owned);
                Presented old = null;
                _presented.AddOrUpdate(id, p, (k, prev) => { old = prev; return p; });
                if (old != null) old.Release();
                e->Certificate = cert.Handle.DangerousGetHandle();
            }
            catch (Exception ex) { TraceFailure("SSLConnectionRequest", ex); }
            finally { Leave(); }
        }

        private unsafe void NSslStatus(SslStatusEvent* e)
        {
            Enter();
            try
            {
                var h = SSLStatus;
                if (h == null) return;
                Raise(h, new MLLPServerSSLStatusEventArgs(e->ConnectionId, Native.PtrToUtf8(e->Message) ?? string.Empty),
                      e->ConnectionId, "SSLStatus");
            }
            catch (Exception ex) { TraceFailure("SSLStatus", ex); }
            finally { Leave(); }
        }

        /// <summary>A certificate presented on one connection: a reference on its handle, and
        /// the certificate itself when the binding loaded it (then disposed with it).</summary>
        private sealed class Presented
        {
            private Certificate _cert;
            private readonly bool _owned;

            internal Presented(Certificate cert, bool owned) { _cert = cert; _owned = owned; }

            internal void Release()
            {
                var c = Interlocked.Exchange(ref _cert, null);
                if (c == null) return;
                try
                {
                    c.Handle.DangerousRelease();
                    if (_owned) c.Dispose();
                }
                catch (Exception ex) { TraceFailure("certificate release", ex); }
            }
        }

        private void ReleasePresented()
        {
            foreach (var id in _presented.Keys)
            {
                Presented p;
                if (_presented.TryRemove(id, out p)) p.Release();
            }
        }

        /// <summary>Raises Error for a failure of the binding's own (not a handler's).</summary>
        private void ReportError(ulong id, int code, string description, Exception ex)
        {
            var h = Error;
            if (h == null) { TraceFailure(description, ex); return; }
            Raise(h, new MLLPServerErrorEventArgs(id, code, description, ex), id, "Error");
        }

        private unsafe void NLog(LogEvent* e)
        {
            Enter();
            try
            {
                var h = Log;
                if (h == null) return;
                Raise(h, new MLLPServerLogEventArgs(e->ConnectionId, e->LogLevel, Native.PtrToUtf8(e->Message),
                                          Native.PtrToUtf8(e->LogType)), e->ConnectionId, "Log");
            }
            catch (Exception ex) { TraceFailure("Log", ex); }
            finally { Leave(); }
        }



        /// <summary>The callbacks handed to the library: static, so never collected, and
        /// dispatching to the server named by the user pointer (a weak GCHandle).</summary>
        private static unsafe class Thunks
        {
            internal static readonly Native.ConnectionRequestCb ConnectionRequest =
                (u, e) => { OnConnectionRequest(u, e); };
            internal static readonly Native.StatusCb Connected =
                (u, e) => { OnConnected(u, e); };
            internal static readonly Native.StatusCb Disconnected =
                (u, e) => { OnDisconnected(u, e); };
            internal static readonly Native.TransferBoundaryCb StartTransfer =
                (u, e) => { OnStartTransfer(u, e); };
            internal static readonly Native.TransferCb Transfer =
                (u, e) => { OnTransfer(u, e); };
            internal static readonly Native.TransferBoundaryCb EndTransfer =
                (u, e) => { OnEndTransfer(u, e); };
            internal static readonly Native.AckOutCb AckOut =
                (u, e) => { OnAckOut(u, e); };
            internal static readonly Native.AckInCb AckIn =
                (u, e) => { OnAckIn(u, e); };
            internal static readonly Native.MessageCb Message =
                (u, e) => { OnMessage(u, e); };
            internal static readonly Native.DuplicateCb Duplicate =
                (u, e) => { OnDuplicate(u, e); };
            internal static readonly Native.ErrorCb Error =
                (u, e) => { OnError(u, e); };
            internal static readonly Native.LogCb Log =
                (u, e) => { OnLog(u, e); };
            internal static readonly Native.SslClientAuthenticationCb SslClientAuthentication =
                (u, e) => { OnSslClientAuthentication(u, e); };
            internal static readonly Native.SslConnectionRequestCb SslConnectionRequest =
                (u, e) => { OnSslConnectionRequest(u, e); };
            internal static readonly Native.SslStatusCb SslStatus =
                (u, e) => { OnSslStatus(u, e); };
            // The reactor thread is attached to the runtime by its first call into managed code
            // (see the constructor: no start hook). The stop hook does not touch the server.
            internal static readonly Native.ThreadCb ThreadStop = u => { };
            internal static readonly Native.ReleaseCb ReleaseUser = u =>
            {
                try { if (u != IntPtr.Zero) GCHandle.FromIntPtr(u).Free(); }
                catch (Exception ex) { TraceFailure("ReleaseUser", ex); }
            };

            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnConnectionRequest(IntPtr u, ConnectionRequestEvent* e) { var s = From(u); if (s != null) s.NConnectionRequest(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnConnected(IntPtr u, StatusEvent* e) { var s = From(u); if (s != null) s.NConnected(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnDisconnected(IntPtr u, StatusEvent* e) { var s = From(u); if (s != null) s.NDisconnected(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnStartTransfer(IntPtr u, TransferBoundaryEvent* e) { var s = From(u); if (s != null) s.NStartTransfer(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnTransfer(IntPtr u, TransferEvent* e) { var s = From(u); if (s != null) s.NTransfer(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnEndTransfer(IntPtr u, TransferBoundaryEvent* e) { var s = From(u); if (s != null) s.NEndTransfer(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnAckOut(IntPtr u, AckOutEvent* e) { var s = From(u); if (s != null) s.NAckOut(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnMessage(IntPtr u, MessageEvent* e) { var s = From(u); if (s != null) s.NMessage(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnDuplicate(IntPtr u, DuplicateEvent* e) { var s = From(u); if (s != null) s.NDuplicate(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnAckIn(IntPtr u, AckInEvent* e) { var s = From(u); if (s != null) s.NAckIn(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnError(IntPtr u, ErrorEvent* e) { var s = From(u); if (s != null) s.NError(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnLog(IntPtr u, LogEvent* e) { var s = From(u); if (s != null) s.NLog(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnSslClientAuthentication(IntPtr u, SslClientAuthenticationEvent* e) { var s = From(u); if (s != null) s.NSslClientAuthentication(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnSslConnectionRequest(IntPtr u, SslConnectionRequestEvent* e) { var s = From(u); if (s != null) s.NSslConnectionRequest(e); }
            [MethodImpl(MethodImplOptions.NoInlining)]
            private static void OnSslStatus(IntPtr u, SslStatusEvent* e) { var s = From(u); if (s != null) s.NSslStatus(e); }

            private static MLLPServer From(IntPtr user)
            {
                try { return user == IntPtr.Zero ? null : GCHandle.FromIntPtr(user).Target as MLLPServer; }
                catch (Exception ex) { TraceFailure("callback", ex); return null; }
            }
        }

        /// <summary>Weak registry of live handles, freed at process exit so no native thread
        /// calls into a runtime that is shutting down.</summary>
        private static class LiveServers
        {
            private static readonly List<WeakReference> s_handles = new List<WeakReference>();
            private static bool s_hooked;

            internal static void Add(MllpServerHandle h)
            {
                lock (s_handles)
                {
                    if (!s_hooked)
                    {
                        AppDomain.CurrentDomain.ProcessExit += OnExit;
                        AppDomain.CurrentDomain.DomainUnload += OnExit;
                        s_hooked = true;
                    }
                    if (s_handles.Count >= 64) s_handles.RemoveAll(w => !w.IsAlive);
                    s_handles.Add(new WeakReference(h, true));
                }
            }

            private static void OnExit(object sender, EventArgs e)
            {
                WeakReference[] all;
                lock (s_handles) { all = s_handles.ToArray(); s_handles.Clear(); }
                foreach (var w in all)
                {
                    try
                    {
                        var h = w.Target as MllpServerHandle;
                        if (h != null && !h.IsClosed) h.Dispose();
                    }
                    catch (Exception ex) { TraceFailure("ProcessExit", ex); }
                }
            }
        }
    }

    /// <summary>Extension: a server's metrics at one moment (<see cref="MLLPServer.Metrics"/>).
    /// <see cref="MLLPServer.MetricsText"/> gives the same numbers, with errors per code, TLS
    /// failures per reason and the latency histogram's buckets, in the Prometheus text
    /// format.</summary>
    public sealed class MLLPServerMetrics
    {
        internal MLLPServerMetrics(MetricsNative m)
        {
            ConnectionsAccepted = (long)m.ConnectionsAccepted;
            ConnectionsRefused = (long)m.ConnectionsRefused;
            ConnectionsOpen = (long)m.ConnectionsOpen;
            MessagesReceived = (long)m.MessagesReceived;
            MessagesAccepted = (long)m.MessagesAccepted;
            MessagesRefused = (long)m.MessagesRefused;
            MessagesDuplicate = (long)m.MessagesDuplicate;
            BytesIn = (long)m.BytesIn;
            BytesOut = (long)m.BytesOut;
            AcksSent = (long)m.AcksSent;
            NaksSent = (long)m.NaksSent;
            Errors = (long)m.Errors;
            TlsHandshakesCompleted = (long)m.TlsHandshakesCompleted;
            TlsHandshakesFailed = (long)m.TlsHandshakesFailed;
            AckLatencyCount = (long)m.AckLatencyCount;
            AckLatencySumSeconds = m.AckLatencySumSeconds;
        }

        /// <summary>Connections accepted and admitted (Connected fired).</summary>
        public long ConnectionsAccepted { get; private set; }
        /// <summary>Connections refused: ConnectionRequest, MaxConnections, PROXY header, TLS handshake.</summary>
        public long ConnectionsRefused { get; private set; }
        /// <summary>Connections open now.</summary>
        public long ConnectionsOpen { get; private set; }
        /// <summary>Complete messages (frames) received.</summary>
        public long MessagesReceived { get; private set; }
        /// <summary>Messages answered positively (ACK, AA, CA).</summary>
        public long MessagesAccepted { get; private set; }
        /// <summary>Messages answered negatively (NAK, AE, AR, CE, CR) or refused by the library.</summary>
        public long MessagesRefused { get; private set; }
        /// <summary>Messages answered from the duplicate window (DuplicateWindow).</summary>
        public long MessagesDuplicate { get; private set; }
        /// <summary>Application bytes received (decrypted, for TLS).</summary>
        public long BytesIn { get; private set; }
        /// <summary>Application bytes sent.</summary>
        public long BytesOut { get; private set; }
        /// <summary>Positive acknowledgements written.</summary>
        public long AcksSent { get; private set; }
        /// <summary>Negative acknowledgements written.</summary>
        public long NaksSent { get; private set; }
        /// <summary>Error events, all codes.</summary>
        public long Errors { get; private set; }
        /// <summary>TLS handshakes completed.</summary>
        public long TlsHandshakesCompleted { get; private set; }
        /// <summary>TLS handshakes failed.</summary>
        public long TlsHandshakesFailed { get; private set; }
        /// <summary>Acknowledgements whose latency was measured.</summary>
        public long AckLatencyCount { get; private set; }
        /// <summary>Sum of those latencies, seconds (end block received to acknowledgement written).</summary>
        public double AckLatencySumSeconds { get; private set; }
    }
}
