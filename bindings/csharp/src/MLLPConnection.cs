using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;

namespace Mllp
{
    /// <summary>A connected MLLP client (the reference's MLLPConnection type). Field reads
    /// and writes go straight to the library; a closed connection throws MLLPException 2002
    /// (except <see cref="Connected"/>, which reads false).</summary>
    public sealed class MLLPConnection
    {
        private readonly MLLPServer _server;
        private volatile StreamBridge _in;
        private volatile StreamBridge _out;

        internal MLLPConnection(MLLPServer server, ulong id)
        {
            _server = server;
            Id = id;
        }

        private MllpServerHandle H { get { return _server.Handle; } }

        /// <summary>The numeric id of the connection.</summary>
        public ulong Id { get; private set; }

        /// <summary>The id of the connection, as the reference spells it (decimal string).</summary>
        public string ConnectionId { get { return Id.ToString(CultureInfo.InvariantCulture); } }

        /// <summary>True while the connection is open.</summary>
        public bool Connected
        {
            get
            {
                byte v;
                int rc = Native.mllp_connection_get_connected(H, Id, out v);
                if (rc == Native.MLLP_ERR_NO_SUCH_CONNECTION) return false;
                Native.Check(rc);
                return v != 0;
            }
        }

        /// <summary>True while a message is partly received (a start block came, its end block not yet).</summary>
        public bool Receiving
        {
            get
            {
                byte v;
                int rc = Native.mllp_connection_get_receiving(H, Id, out v);
                if (rc == Native.MLLP_ERR_NO_SUCH_CONNECTION) return false;
                Native.Check(rc);
                return v != 0;
            }
        }

        /// <summary>The client's IP address.</summary>
        public string RemoteHost
        {
            get { return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_connection_get_remote_host(H, Id, b, ref l)); }
        }

        /// <summary>The client's port.</summary>
        public int RemotePort
        {
            get { ushort v; Native.Check(Native.mllp_connection_get_remote_port(H, Id, out v)); return v; }
        }

        /// <summary>The local interface the connection arrived on.</summary>
        public string LocalAddress
        {
            get { return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_connection_get_local_address(H, Id, b, ref l)); }
        }

        /// <summary>Seconds a Send waits for the acknowledgement (0 = asynchronous).</summary>
        public int Timeout
        {
            get { uint v; Native.Check(Native.mllp_connection_get_timeout(H, Id, out v)); return (int)Math.Min(v, int.MaxValue); }
            set
            {
                if (value < 0) throw new ArgumentOutOfRangeException("value", "Timeout cannot be negative");
                Native.Check(Native.mllp_connection_set_timeout(H, Id, (uint)value));
            }
        }

        /// <summary>The HL7 data Send sends, as text (encoded with the server's TextEncoding).</summary>
        public string InputData
        {
            get { return _server.TextEncoding.GetString(InputDataB); }
            set { InputDataB = _server.TextEncoding.GetBytes(value ?? string.Empty); }
        }

        /// <summary>The HL7 data Send sends, as bytes.</summary>
        public byte[] InputDataB
        {
            get { return Native.GetBuffer((byte[] b, ref UIntPtr l) => Native.mllp_connection_get_input_data(H, Id, b, ref l)); }
            set
            {
                var d = value ?? new byte[0];
                Native.Check(Native.mllp_connection_set_input_data(H, Id, d, new UIntPtr((uint)d.Length)));
            }
        }

        /// <summary>Send reads this file when no InputStream is set ("" clears it).</summary>
        public string InputFileName
        {
            get { return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_connection_get_input_file_name(H, Id, b, ref l)); }
            set { Native.Check(Native.mllp_connection_set_input_file_name(H, Id, Native.Utf8z(value ?? string.Empty))); }
        }

        /// <summary>The last message received when no OutputStream or OutputFileName took it, as text.</summary>
        public string OutputData
        {
            get { return _server.TextEncoding.GetString(OutputDataB); }
        }

        /// <summary>The last message received when no OutputStream or OutputFileName took it, as bytes.</summary>
        public byte[] OutputDataB
        {
            get { return Native.GetBuffer((byte[] b, ref UIntPtr l) => Native.mllp_connection_get_output_data(H, Id, b, ref l)); }
        }

        /// <summary>Each message received is written to this file ("" clears it).</summary>
        public string OutputFileName
        {
            get { return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_connection_get_output_file_name(H, Id, b, ref l)); }
            set { Native.Check(Native.mllp_connection_set_output_file_name(H, Id, Native.Utf8z(value ?? string.Empty))); }
        }

        /// <summary>
        /// Send reads this stream to its end and sends what it read. The library owns the stream
        /// once assigned: it is disposed when the library lets go of it (after a Send when
        /// CloseStreamAfterTransfer is True, the default; when replaced; when the connection
        /// closes; or at once if the assignment fails). Null clears it. The getter returns the
        /// stream while the library still holds it, else null.
        /// </summary>
        public Stream InputStream
        {
            get { var b = _in; return b != null && !b.Closed ? b.Stream : null; }
            set
            {
                if (value == null)
                {
                    Native.Check(Native.mllp_connection_set_input_stream(H, Id, null, null, IntPtr.Zero));
                    _in = null;
                    return;
                }
                if (!value.CanRead) throw new ArgumentException("InputStream must be readable", "value");
                var bridge = new StreamBridge(value);
                IntPtr user = bridge.Pin();
                int rc;
                try { rc = Native.mllp_connection_set_input_stream(H, Id, StreamBridge.ReadThunk, StreamBridge.CloseThunk, user); }
                catch (ObjectDisposedException) { bridge.Unpin(user); throw; }   // never reached the library
                Native.Check(rc);   // on failure the library has already called close
                _in = bridge;
            }
        }

        /// <summary>
        /// Each message received is written to this stream instead of OutputData/OutputFileName
        /// (a write that throws refuses the message). Ownership as for <see cref="InputStream"/>.
        /// </summary>
        public Stream OutputStream
        {
            get { var b = _out; return b != null && !b.Closed ? b.Stream : null; }
            set
            {
                if (value == null)
                {
                    Native.Check(Native.mllp_connection_set_output_stream(H, Id, null, null, IntPtr.Zero));
                    _out = null;
                    return;
                }
                if (!value.CanWrite) throw new ArgumentException("OutputStream must be writable", "value");
                var bridge = new StreamBridge(value);
                IntPtr user = bridge.Pin();
                int rc;
                try { rc = Native.mllp_connection_set_output_stream(H, Id, StreamBridge.WriteThunk, StreamBridge.CloseThunk, user); }
                catch (ObjectDisposedException) { bridge.Unpin(user); throw; }
                Native.Check(rc);
                _out = bridge;
            }
        }

        /// <summary>A negotiated TLS value: name is SSLNegotiatedCipher,
        /// SSLNegotiatedCipherStrength, SSLNegotiatedCipherSuite, SSLNegotiatedKeyExchange,
        /// SSLNegotiatedKeyExchangeStrength or SSLNegotiatedVersion; "" before the handshake
        /// completes or on a plain connection.</summary>
        public string GetSSLNegotiated(string name)
        {
            if (name == null) throw new ArgumentNullException("name");
            byte[] n = Native.Utf8z(name);
            return Native.GetString((byte[] b, ref UIntPtr l) => Native.mllp_connection_get_ssl_negotiated(H, Id, n, b, ref l));
        }

        /// <summary>SSLNegotiatedVersion: e.g. "TLS1.3" or "TLS1.2" ("" on a plain connection).</summary>
        public string SSLNegotiatedVersion { get { return GetSSLNegotiated("SSLNegotiatedVersion"); } }
        /// <summary>SSLNegotiatedCipher: the bulk cipher, e.g. "AES".</summary>
        public string SSLNegotiatedCipher { get { return GetSSLNegotiated("SSLNegotiatedCipher"); } }
        /// <summary>SSLNegotiatedCipherStrength: the bulk cipher's key length in bits.</summary>
        public string SSLNegotiatedCipherStrength { get { return GetSSLNegotiated("SSLNegotiatedCipherStrength"); } }
        /// <summary>SSLNegotiatedCipherSuite: the cipher suite's name.</summary>
        public string SSLNegotiatedCipherSuite { get { return GetSSLNegotiated("SSLNegotiatedCipherSuite"); } }
        /// <summary>SSLNegotiatedKeyExchange: the key exchange algorithm.</summary>
        public string SSLNegotiatedKeyExchange { get { return GetSSLNegotiated("SSLNegotiatedKeyExchange"); } }
        /// <summary>SSLNegotiatedKeyExchangeStrength: the key exchange's strength in bits.</summary>
        public string SSLNegotiatedKeyExchangeStrength { get { return GetSSLNegotiated("SSLNegotiatedKeyExchangeStrength"); } }

        /// <summary>Extension: <see cref="MLLPServer.Acknowledge(ulong, long, bool, RejectCode)"/>
        /// for this connection (decides a message whose AckOut set Defer).</summary>
        public void Acknowledge(long messageSeq, bool accept, RejectCode rejectCode)
        {
            _server.Acknowledge(Id, messageSeq, accept, rejectCode);
        }
        /// <summary>Acknowledge with RejectCode.AE.</summary>
        public void Acknowledge(long messageSeq, bool accept) { _server.Acknowledge(Id, messageSeq, accept, RejectCode.AE); }
        /// <summary>Extension: <see cref="MLLPServer.AcknowledgeWith(ulong, long, byte[])"/> for this connection.</summary>
        public void AcknowledgeWith(long messageSeq, byte[] reply) { _server.AcknowledgeWith(Id, messageSeq, reply); }
        /// <summary>Extension: <see cref="MLLPServer.SendAppAck(ulong, byte[], AckCode, string)"/> for this connection.</summary>
        public bool SendAppAck(byte[] message, AckCode code, string text = null) { return _server.SendAppAck(Id, message, code, text); }

        public override string ToString() { return "MLLPConnection " + ConnectionId; }
    }

    /// <summary>Keeps a .NET stream alive (GCHandle) while the library holds it, and bridges
    /// the read/write/close callbacks. The thunks are static: never collected.</summary>
    internal sealed class StreamBridge
    {
        internal static readonly Native.ReadCb ReadThunk = Read;
        internal static readonly Native.WriteCb WriteThunk = Write;
        internal static readonly Native.ReleaseCb CloseThunk = Close;

        internal readonly Stream Stream;
        internal volatile bool Closed;
        private byte[] _buf;

        internal StreamBridge(Stream s) { Stream = s; }

        internal IntPtr Pin() { return GCHandle.ToIntPtr(GCHandle.Alloc(this)); }

        internal void Unpin(IntPtr user) { GCHandle.FromIntPtr(user).Free(); }

        private static StreamBridge From(IntPtr user) { return (StreamBridge)GCHandle.FromIntPtr(user).Target; }

        private byte[] Buffer(int n)
        {
            if (_buf == null || _buf.Length < n) _buf = new byte[Math.Max(n, 4096)];
            return _buf;
        }

        private static IntPtr Read(IntPtr user, IntPtr buf, UIntPtr cap)
        {
            try
            {
                var b = From(user);
                int want = (int)Math.Min(cap.ToUInt64(), 1UL << 16);
                if (want == 0) return IntPtr.Zero;
                var tmp = b.Buffer(want);
                int n = b.Stream.Read(tmp, 0, want);
                if (n > 0) Marshal.Copy(tmp, 0, buf, n);
                return new IntPtr(n);
            }
            catch (Exception ex)
            {
                MLLPServer.TraceFailure("InputStream.Read", ex);
                return new IntPtr(-1);
            }
        }

        private static int Write(IntPtr user, IntPtr data, UIntPtr len)
        {
            try
            {
                var b = From(user);
                ulong total = len.ToUInt64();
                ulong done = 0;
                while (done < total)
                {
                    int chunk = (int)Math.Min(total - done, 1UL << 16);
                    var tmp = b.Buffer(chunk);
                    Marshal.Copy(new IntPtr(data.ToInt64() + (long)done), tmp, 0, chunk);
                    b.Stream.Write(tmp, 0, chunk);
                    done += (ulong)chunk;
                }
                b.Stream.Flush();
                return 0;
            }
            catch (Exception ex)
            {
                MLLPServer.TraceFailure("OutputStream.Write", ex);
                return 1;
            }
        }

        private static void Close(IntPtr user)
        {
            try
            {
                var h = GCHandle.FromIntPtr(user);
                var b = (StreamBridge)h.Target;
                h.Free();
                b.Closed = true;
                b.Stream.Dispose();
            }
            catch (Exception ex)
            {
                MLLPServer.TraceFailure("Stream.Close", ex);
            }
        }
    }

    /// <summary>The reference's Connections map: connection id -> MLLPConnection, for the
    /// connections open right now (read from the library on every access).</summary>
    public sealed class MLLPConnectionMap : IReadOnlyDictionary<string, MLLPConnection>
    {
        private readonly MLLPServer _server;

        internal MLLPConnectionMap(MLLPServer server) { _server = server; }

        /// <summary>The open connection with this id (the decimal string of
        /// <see cref="MLLPConnection.Id"/>); KeyNotFoundException if none is open with it, a
        /// malformed id ("abc") included; ArgumentNullException for null.</summary>
        public MLLPConnection this[string connectionId]
        {
            get
            {
                if (connectionId == null) throw new ArgumentNullException("connectionId");
                MLLPConnection c;
                if (!TryGetValue(connectionId, out c))
                    throw new KeyNotFoundException("no open connection has id '" + connectionId + "'");
                return c;
            }
        }

        /// <summary>The open connection with this id; KeyNotFoundException if none.</summary>
        public MLLPConnection this[ulong connectionId]
        {
            get
            {
                MLLPConnection c;
                if (!TryGetValue(connectionId, out c))
                    throw new KeyNotFoundException("no open connection has id " + connectionId);
                return c;
            }
        }

        public bool TryGetValue(ulong connectionId, out MLLPConnection connection)
        {
            if (Array.IndexOf(_server.ConnectionIds(), connectionId) >= 0)
            {
                connection = _server.GetConnection(connectionId);
                return true;
            }
            connection = null;
            return false;
        }

        public bool TryGetValue(string key, out MLLPConnection value)
        {
            ulong id;
            if (MLLPServer.TryParseId(key, out id))
                return TryGetValue(id, out value);
            value = null;
            return false;
        }

        public bool ContainsKey(string key) { MLLPConnection c; return TryGetValue(key, out c); }
        public bool ContainsKey(ulong key) { MLLPConnection c; return TryGetValue(key, out c); }

        /// <summary>Number of open connections (the same as <see cref="MLLPServer.ConnectionCount"/>).</summary>
        public int Count { get { return _server.ConnectionCount; } }

        private List<MLLPConnection> Snapshot()
        {
            var ids = _server.ConnectionIds();
            _server.PruneConnections(ids);
            var l = new List<MLLPConnection>(ids.Length);
            foreach (var id in ids) l.Add(_server.GetConnection(id));
            return l;
        }

        public IEnumerable<string> Keys
        {
            get { foreach (var c in Snapshot()) yield return c.ConnectionId; }
        }

        public IEnumerable<MLLPConnection> Values { get { return Snapshot(); } }

        public IEnumerator<KeyValuePair<string, MLLPConnection>> GetEnumerator()
        {
            foreach (var c in Snapshot())
                yield return new KeyValuePair<string, MLLPConnection>(c.ConnectionId, c);
        }

        IEnumerator IEnumerable.GetEnumerator() { return GetEnumerator(); }
    }
}
