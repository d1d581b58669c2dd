package mllp;

import com.sun.jna.Callback;
import com.sun.jna.Native;
import com.sun.jna.NativeLibrary;
import com.sun.jna.Platform;
import com.sun.jna.Pointer;

import java.io.File;
import java.io.IOException;
import java.net.URL;

/**
 * Direct mapping of include/mllp.h. Internal: use {@link MLLPServer} and {@link MLLPClient}.
 *
 * <p>Text is passed as NUL-terminated UTF-8 {@code byte[]} (see {@link #cstr}) so that the
 * platform's default charset never matters. size_t out-parameters are Pointers to native
 * memory of {@link Native#SIZE_T_SIZE} bytes.
 */
final class Lib {
    static final int MLLP_OK = 0;
    static final int ERR_BUFFER_TOO_SMALL = 2008;
    static final int ERR_REENTRANT = 2006;
    static final int ERR_INVALID_ARGUMENT = 2001;
    static final int ERR_NO_SUCH_CONNECTION = 2002;
    static final int ERR_BAD_STATE = 211;
    static final int CERT_FIELD_SUBJECT = 1;
    static final int CERT_FIELD_ISSUER = 2;
    static final int CERT_FIELD_SERIAL_NUMBER = 3;
    static final int CERT_FIELD_EFFECTIVE_DATE = 4;
    static final int CERT_FIELD_EXPIRATION_DATE = 5;
    static final int CERT_FIELD_THUMBPRINT_SHA1 = 6;
    static final int CERT_FIELD_THUMBPRINT_SHA256 = 7;

    /**
     * Where libmllp was loaded from: a file path, the {@code jar:} URL of the copy in the jar,
     * or the name JNA searched for.
     */
    static final String LIBRARY_SOURCE;

    static {
        String[] source = new String[1];
        NativeLibrary lib = load(source);
        LIBRARY_SOURCE = source[0];
        Native.register(Lib.class, lib);
    }

    /**
     * libmllp: the copy carried by this jar ({@code linux-x86-64/libmllp.so}, JNA's resource path
     * for the platform), so the jar and JNA are all an application needs. When
     * {@code jna.library.path} is set, or the jar carries no copy for this platform, JNA's usual
     * search instead ({@code jna.library.path}, then the system's library path).
     */
    private static NativeLibrary load(String[] source) {
        String name = "mllp";
        ClassLoader cl = Lib.class.getClassLoader();
        String resource = Platform.RESOURCE_PREFIX + "/" + System.mapLibraryName(name);
        URL url = cl == null ? null : cl.getResource(resource);
        if (System.getProperty("jna.library.path", "").isEmpty() && url != null) {
            File file;
            try {
                file = Native.extractFromResourcePath(name, cl);
            } catch (IOException e) {
                UnsatisfiedLinkError err = new UnsatisfiedLinkError("cannot extract " + url + ": " + e.getMessage());
                err.initCause(e);
                throw err;
            }
            NativeLibrary lib = NativeLibrary.getInstance(file.getAbsolutePath());
            if ("file".equals(url.getProtocol())) {
                source[0] = file.getAbsolutePath();         // a classes directory: used in place
            } else {
                source[0] = url.toString();                 // unpacked from the jar into a temporary file
                if (!file.delete()) {                       // mapped now: as JNA does, remove it at once
                    file.deleteOnExit();
                }
            }
            return lib;
        }
        NativeLibrary lib = NativeLibrary.getInstance(name);
        source[0] = lib.getFile() != null ? lib.getFile().getAbsolutePath() : name;
        return lib;
    }

    private Lib() {}

    // ---- callbacks (the C typedefs) ----
    interface ConnectionRequestCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface StatusCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface TransferBoundaryCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface TransferCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface AckOutCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface MessageCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface DuplicateCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface AckInCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface ErrorCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface LogCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface SslClientAuthCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface SslConnectionRequestCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface SslStatusCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface ThreadCb extends Callback {
        void invoke(Pointer user);
    }

    interface ReleaseCb extends Callback {
        void invoke(Pointer user);
    }

    interface ReadCb extends Callback {
        PtrDiffT invoke(Pointer user, Pointer buf, SizeT cap);
    }

    interface WriteCb extends Callback {
        int invoke(Pointer user, Pointer data, SizeT len);
    }

    // ---- globals ----
    static native String mllp_version();
    static native Pointer mllp_error_description(int code);
    static native int mllp_last_error_code();
    static native Pointer mllp_last_error_message();

    // ---- callbacks registration ----
    static native int mllp_server_on_connection_request(Pointer s, ConnectionRequestCb cb);
    static native int mllp_server_on_connected(Pointer s, StatusCb cb);
    static native int mllp_server_on_disconnected(Pointer s, StatusCb cb);
    static native int mllp_server_on_start_transfer(Pointer s, TransferBoundaryCb cb);
    static native int mllp_server_on_transfer(Pointer s, TransferCb cb);
    static native int mllp_server_on_end_transfer(Pointer s, TransferBoundaryCb cb);
    static native int mllp_server_on_ack_out(Pointer s, AckOutCb cb);
    static native int mllp_server_on_message(Pointer s, MessageCb cb);
    static native int mllp_server_on_duplicate(Pointer s, DuplicateCb cb);
    static native int mllp_server_on_ack_in(Pointer s, AckInCb cb);
    static native int mllp_server_on_error(Pointer s, ErrorCb cb);
    static native int mllp_server_on_log(Pointer s, LogCb cb);
    static native int mllp_server_on_thread_start(Pointer s, ThreadCb cb);
    static native int mllp_server_on_thread_stop(Pointer s, ThreadCb cb);
    static native int mllp_server_set_user_data(Pointer s, Pointer user, ReleaseCb release);

    // ---- connection ----
    static native int mllp_connection_get_connected(Pointer s, long id, byte[] out);
    static native int mllp_connection_get_receiving(Pointer s, long id, byte[] out);
    static native int mllp_connection_get_remote_host(Pointer s, long id, byte[] buf, Pointer len);
    static native int mllp_connection_get_remote_port(Pointer s, long id, short[] out);
    static native int mllp_connection_get_local_address(Pointer s, long id, byte[] buf, Pointer len);
    static native int mllp_connection_get_timeout(Pointer s, long id, int[] out);
    static native int mllp_connection_set_timeout(Pointer s, long id, int seconds);
    static native int mllp_connection_get_input_data(Pointer s, long id, byte[] buf, Pointer len);
    static native int mllp_connection_set_input_data(Pointer s, long id, byte[] data, SizeT len);
    static native int mllp_connection_get_input_file_name(Pointer s, long id, byte[] buf, Pointer len);
    static native int mllp_connection_set_input_file_name(Pointer s, long id, byte[] path);
    static native int mllp_connection_get_output_data(Pointer s, long id, byte[] buf, Pointer len);
    static native int mllp_connection_get_output_file_name(Pointer s, long id, byte[] buf, Pointer len);
    static native int mllp_connection_set_output_file_name(Pointer s, long id, byte[] path);
    static native int mllp_connection_set_input_stream(Pointer s, long id, ReadCb read, ReleaseCb close, Pointer user);
    static native int mllp_connection_set_output_stream(Pointer s, long id, WriteCb write, ReleaseCb close, Pointer user);

    // ---- server ----
    static native Pointer mllp_server_new();
    static native int mllp_server_free(Pointer s);
    static native int mllp_server_get_default_timeout(Pointer s, int[] out);
    static native int mllp_server_get_keep_alive(Pointer s, byte[] out);
    static native int mllp_server_get_listening(Pointer s, byte[] out);
    static native int mllp_server_get_local_port(Pointer s, short[] out);
    static native int mllp_server_get_version(Pointer s, int[] out);
    static native int mllp_server_get_connection_count(Pointer s, Pointer out);
    static native int mllp_server_set_default_timeout(Pointer s, int seconds);
    static native int mllp_server_set_keep_alive(Pointer s, byte keepAlive);
    static native int mllp_server_set_local_port(Pointer s, short port);
    static native int mllp_server_set_version(Pointer s, int version);
    static native int mllp_server_get_local_host(Pointer s, byte[] buf, Pointer len);
    static native int mllp_server_set_local_host(Pointer s, byte[] host);
    static native int mllp_server_config(Pointer s, byte[] setting, byte[] buf, Pointer len);
    static native int mllp_server_start_listening(Pointer s);
    static native int mllp_server_stop_listening(Pointer s);
    static native int mllp_server_shutdown(Pointer s);
    static native int mllp_server_reset(Pointer s);
    static native int mllp_server_disconnect(Pointer s, long id);
    static native int mllp_server_interrupt(Pointer s, long id);
    static native int mllp_server_send(Pointer s, long id);
    static native int mllp_server_send_bytes(Pointer s, long id, byte[] data, SizeT len);
    static native int mllp_server_do_events(Pointer s, int timeoutMs, Pointer delivered);
    static native int mllp_server_get_connections(Pointer s, long[] ids, Pointer len);
    static native int mllp_server_acknowledge(Pointer s, long id, long seq, byte accept, int rejectCode);
    static native int mllp_server_acknowledge_with(Pointer s, long id, long seq, byte[] reply, SizeT replyLen);
    static native int mllp_server_send_app_ack(Pointer s, long id, byte[] message, SizeT messageLen, int code,
            byte[] text, byte[] sent);
    static native int mllp_server_get_duplicate_count(Pointer s, long[] count);
    static native int mllp_server_get_metrics(Pointer s, Structs.Metrics out);
    static native int mllp_server_get_metrics_text(Pointer s, byte[] buf, Pointer len);

    // ---- HL7 ----
    static native int mllp_hl7_build_ack(byte[] message, SizeT messageLen, int code, byte[] text, byte[] out,
            Pointer outLen);

    // ---- TLS ----
    static native int mllp_certificate_load(int storeType, byte[] store, SizeT storeLen, byte[] password,
            byte[] subject, com.sun.jna.ptr.PointerByReference out);
    static native void mllp_certificate_free(Pointer cert);
    static native int mllp_certificate_get_field(Pointer cert, int field, byte[] buf, Pointer len);
    static native int mllp_certificate_get_encoded(Pointer cert, byte[] buf, Pointer len);
    static native int mllp_certificate_get_private_key_available(Pointer cert, byte[] out);
    static native int mllp_server_set_ssl_cert(Pointer s, Pointer cert);
    static native int mllp_server_get_ssl_cert(Pointer s, com.sun.jna.ptr.PointerByReference out);
    static native int mllp_server_get_ssl_enabled(Pointer s, byte[] out);
    static native int mllp_server_set_ssl_enabled(Pointer s, byte enabled);
    static native int mllp_server_get_ssl_authenticate_clients(Pointer s, byte[] out);
    static native int mllp_server_set_ssl_authenticate_clients(Pointer s, byte on);
    static native int mllp_connection_get_ssl_negotiated(Pointer s, long id, byte[] name, byte[] buf, Pointer len);
    static native int mllp_server_on_ssl_client_authentication(Pointer s, SslClientAuthCb cb);
    static native int mllp_server_on_ssl_connection_request(Pointer s, SslConnectionRequestCb cb);
    static native int mllp_server_on_ssl_status(Pointer s, SslStatusCb cb);

    // ---- client (sender) ----
    interface ClientAckInCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface SendDoneCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    interface SslServerAuthCb extends Callback {
        void invoke(Pointer user, Pointer event);
    }

    static native Pointer mllp_client_new();
    static native int mllp_client_free(Pointer c);
    static native int mllp_client_set_user_data(Pointer c, Pointer user, ReleaseCb release);
    static native int mllp_client_get_remote_host(Pointer c, byte[] buf, Pointer len);
    static native int mllp_client_set_remote_host(Pointer c, byte[] host);
    static native int mllp_client_get_remote_port(Pointer c, short[] out);
    static native int mllp_client_set_remote_port(Pointer c, short port);
    static native int mllp_client_get_local_host(Pointer c, byte[] buf, Pointer len);
    static native int mllp_client_set_local_host(Pointer c, byte[] host);
    static native int mllp_client_get_version(Pointer c, int[] out);
    static native int mllp_client_set_version(Pointer c, int version);
    static native int mllp_client_get_timeout(Pointer c, int[] out);
    static native int mllp_client_set_timeout(Pointer c, int seconds);
    static native int mllp_client_get_keep_alive(Pointer c, byte[] out);
    static native int mllp_client_set_keep_alive(Pointer c, byte on);
    static native int mllp_client_get_connected(Pointer c, byte[] out);
    static native int mllp_client_get_ssl_enabled(Pointer c, byte[] out);
    static native int mllp_client_set_ssl_enabled(Pointer c, byte on);
    static native int mllp_client_set_ssl_cert(Pointer c, Pointer cert);
    static native int mllp_client_get_pending(Pointer c, Pointer out);
    static native int mllp_client_config(Pointer c, byte[] setting, byte[] buf, Pointer len);
    static native int mllp_client_connect(Pointer c);
    static native int mllp_client_disconnect(Pointer c);
    static native int mllp_client_send(Pointer c, byte[] data, SizeT len, Structs.SendResult result);
    static native int mllp_client_send_async(Pointer c, byte[] data, SizeT len, long[] messageId);
    static native int mllp_client_do_events(Pointer c, int timeoutMs, Pointer pending);
    static native int mllp_client_on_connected(Pointer c, StatusCb cb);
    static native int mllp_client_on_disconnected(Pointer c, StatusCb cb);
    static native int mllp_client_on_ack_in(Pointer c, ClientAckInCb cb);
    static native int mllp_client_on_send_done(Pointer c, SendDoneCb cb);
    static native int mllp_client_on_error(Pointer c, ErrorCb cb);
    static native int mllp_client_on_log(Pointer c, LogCb cb);
    static native int mllp_client_on_ssl_server_authentication(Pointer c, SslServerAuthCb cb);
    static native int mllp_client_on_ssl_status(Pointer c, SslStatusCb cb);

    // ---- helpers ----

    /** NUL-terminated UTF-8. */
    static byte[] cstr(String s) {
        byte[] b = (s == null ? "" : s).getBytes(java.nio.charset.StandardCharsets.UTF_8);
        byte[] out = new byte[b.length + 1];
        System.arraycopy(b, 0, out, 0, b.length);
        return out;
    }

    /** A NUL-terminated UTF-8 C string, or null. */
    static String str(Pointer p) {
        return p == null ? null : p.getString(0, "UTF-8");
    }

    static long getSize(Pointer p) {
        return Native.SIZE_T_SIZE == 8 ? p.getLong(0) : (p.getInt(0) & 0xFFFFFFFFL);
    }

    static void setSize(Pointer p, long v) {
        if (Native.SIZE_T_SIZE == 8) {
            p.setLong(0, v);
        } else {
            p.setInt(0, (int) v);
        }
    }

    /** The message of the last failure on this thread (call right after the failing call). */
    static String lastMessage(int code) {
        String m = str(mllp_last_error_message());
        if (m == null || m.isEmpty()) {
            m = str(mllp_error_description(code));
        }
        return m;
    }
}
