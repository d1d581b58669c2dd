package mllp;

import com.sun.jna.Pointer;
import com.sun.jna.Structure;
import com.sun.jna.Structure.FieldOrder;

/** The event structs of mllp.h, field for field (default C alignment). Internal. */
final class Structs {
    private Structs() {}

    /** mllp_connection_request_event. */
    @FieldOrder({"address", "port", "accept"})
    public static class ConnectionRequest extends Structure {
        public Pointer address;
        public short port;
        public byte accept;

        public ConnectionRequest() {}

        public ConnectionRequest(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_status_event. */
    @FieldOrder({"connection_id", "status_code", "description"})
    public static class Status extends Structure {
        public long connection_id;
        public int status_code;
        public Pointer description;

        public Status() {}

        public Status(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_transfer_boundary_event. */
    @FieldOrder({"connection_id", "message_seq", "charset", "encoding"})
    public static class TransferBoundary extends Structure {
        public long connection_id;
        public long message_seq;
        public Pointer charset;
        public Pointer encoding;

        public TransferBoundary() {}

        public TransferBoundary(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_transfer_event. */
    @FieldOrder({"connection_id", "bytes_transferred", "data", "len"})
    public static class Transfer extends Structure {
        public long connection_id;
        public long bytes_transferred;
        public Pointer data;
        public SizeT len;

        public Transfer() {}

        public Transfer(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_ack_out_event. */
    @FieldOrder({"connection_id", "message_seq", "accept", "reject_code", "message", "message_len", "defer",
            "charset", "encoding", "reply", "reply_len"})
    public static class AckOut extends Structure {
        public long connection_id;
        public long message_seq;
        public byte accept;
        public int reject_code;
        public Pointer message;
        public SizeT message_len;
        public byte defer;
        public Pointer charset;
        public Pointer encoding;
        public Pointer reply;
        public SizeT reply_len;

        public AckOut() {}

        public AckOut(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_message_event. */
    @FieldOrder({"connection_id", "message_seq", "data", "len", "charset", "encoding", "decoded"})
    public static class Message extends Structure {
        public long connection_id;
        public long message_seq;
        public Pointer data;
        public SizeT len;
        public Pointer charset;
        public Pointer encoding;
        public byte decoded;

        public Message() {}

        public Message(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_duplicate_event. */
    @FieldOrder({"connection_id", "message", "message_len", "control_id", "reply", "reply_len"})
    public static class Duplicate extends Structure {
        public long connection_id;
        public Pointer message;
        public SizeT message_len;
        public Pointer control_id;
        public Pointer reply;
        public SizeT reply_len;

        public Duplicate() {}

        public Duplicate(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_ack_in_event. */
    @FieldOrder({"connection_id", "accepted"})
    public static class AckIn extends Structure {
        public long connection_id;
        public byte accepted;

        public AckIn() {}

        public AckIn(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_error_event. */
    @FieldOrder({"connection_id", "error_code", "description"})
    public static class Error extends Structure {
        public long connection_id;
        public int error_code;
        public Pointer description;

        public Error() {}

        public Error(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_log_event. */
    @FieldOrder({"connection_id", "log_level", "message", "log_type"})
    public static class Log extends Structure {
        public long connection_id;
        public int log_level;
        public Pointer message;
        public Pointer log_type;

        public Log() {}

        public Log(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_ssl_client_authentication_event. */
    @FieldOrder({"connection_id", "cert_encoded", "cert_encoded_len", "cert_subject", "cert_issuer", "status",
            "accept"})
    public static class SslClientAuth extends Structure {
        public long connection_id;
        public Pointer cert_encoded;
        public SizeT cert_encoded_len;
        public Pointer cert_subject;
        public Pointer cert_issuer;
        public Pointer status;
        public byte accept;

        public SslClientAuth() {}

        public SslClientAuth(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_ssl_connection_request_event. */
    @FieldOrder({"connection_id", "supported_cipher_suites", "supported_signature_algs", "certificate"})
    public static class SslConnectionRequest extends Structure {
        public long connection_id;
        public Pointer supported_cipher_suites;
        public Pointer supported_signature_algs;
        public Pointer certificate;

        public SslConnectionRequest() {}

        public SslConnectionRequest(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_ssl_status_event. */
    @FieldOrder({"connection_id", "message"})
    public static class SslStatus extends Structure {
        public long connection_id;
        public Pointer message;

        public SslStatus() {}

        public SslStatus(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_send_result (written by mllp_client_send). */
    @FieldOrder({"message_id", "ack_kind", "attempts"})
    public static class SendResult extends Structure {
        public long message_id;
        public int ack_kind;
        public int attempts;

        public SendResult() {}

        public SendResult(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_client_ack_in_event. */
    @FieldOrder({"connection_id", "message_id", "kind", "control_id", "text", "data", "len", "matched"})
    public static class ClientAckIn extends Structure {
        public long connection_id;
        public long message_id;
        public int kind;
        public Pointer control_id;
        public Pointer text;
        public Pointer data;
        public SizeT len;
        public byte matched;

        public ClientAckIn() {}

        public ClientAckIn(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_send_done_event. */
    @FieldOrder({"connection_id", "message_id", "control_id", "result_code", "description", "ack_kind", "attempts"})
    public static class SendDone extends Structure {
        public long connection_id;
        public long message_id;
        public Pointer control_id;
        public int result_code;
        public Pointer description;
        public int ack_kind;
        public int attempts;

        public SendDone() {}

        public SendDone(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_ssl_server_authentication_event. */
    @FieldOrder({"connection_id", "cert_encoded", "cert_encoded_len", "cert_subject", "cert_issuer", "status",
            "accept"})
    public static class SslServerAuth extends Structure {
        public long connection_id;
        public Pointer cert_encoded;
        public SizeT cert_encoded_len;
        public Pointer cert_subject;
        public Pointer cert_issuer;
        public Pointer status;
        public byte accept;

        public SslServerAuth() {}

        public SslServerAuth(Pointer p) {
            super(p);
            read();
        }
    }

    /** mllp_metrics (mllp_server_get_metrics). */
    @FieldOrder({"connections_accepted", "connections_refused", "connections_open", "messages_received",
            "messages_accepted", "messages_refused", "messages_duplicate", "bytes_in", "bytes_out", "acks_sent",
            "naks_sent", "errors", "tls_handshakes_completed", "tls_handshakes_failed", "ack_latency_count",
            "ack_latency_sum_seconds"})
    public static class Metrics extends Structure {
        public long connections_accepted;
        public long connections_refused;
        public long connections_open;
        public long messages_received;
        public long messages_accepted;
        public long messages_refused;
        public long messages_duplicate;
        public long bytes_in;
        public long bytes_out;
        public long acks_sent;
        public long naks_sent;
        public long errors;
        public long tls_handshakes_completed;
        public long tls_handshakes_failed;
        public long ack_latency_count;
        public double ack_latency_sum_seconds;

        public Metrics() {}
    }

    /**
     * Field offsets of the per-message event structs, for reading them straight from the
     * native pointer: a {@link Structure} read per event (reflection over every field) costs
     * more than the rest of the event. Taken from the Structure definitions above, which the
     * layout test compares with the C compiler's view.
     */
    static final class Off {
        private Off() {}

        static final int TB_CONNECTION_ID, TB_MESSAGE_SEQ, TB_CHARSET, TB_ENCODING;
        static final int TR_CONNECTION_ID, TR_BYTES_TRANSFERRED, TR_DATA, TR_LEN;
        static final int AO_CONNECTION_ID, AO_MESSAGE_SEQ, AO_ACCEPT, AO_REJECT_CODE, AO_MESSAGE,
                AO_MESSAGE_LEN, AO_DEFER, AO_CHARSET, AO_ENCODING, AO_REPLY, AO_REPLY_LEN;
        static final int MS_CONNECTION_ID, MS_MESSAGE_SEQ, MS_DATA, MS_LEN, MS_CHARSET, MS_ENCODING, MS_DECODED;

        static {
            Structure tb = new TransferBoundary();
            TB_CONNECTION_ID = offsetOf(tb, "connection_id");
            TB_MESSAGE_SEQ = offsetOf(tb, "message_seq");
            TB_CHARSET = offsetOf(tb, "charset");
            TB_ENCODING = offsetOf(tb, "encoding");
            Structure tr = new Transfer();
            TR_CONNECTION_ID = offsetOf(tr, "connection_id");
            TR_BYTES_TRANSFERRED = offsetOf(tr, "bytes_transferred");
            TR_DATA = offsetOf(tr, "data");
            TR_LEN = offsetOf(tr, "len");
            Structure ao = new AckOut();
            AO_CONNECTION_ID = offsetOf(ao, "connection_id");
            AO_MESSAGE_SEQ = offsetOf(ao, "message_seq");
            AO_ACCEPT = offsetOf(ao, "accept");
            AO_REJECT_CODE = offsetOf(ao, "reject_code");
            AO_MESSAGE = offsetOf(ao, "message");
            AO_MESSAGE_LEN = offsetOf(ao, "message_len");
            AO_DEFER = offsetOf(ao, "defer");
            AO_CHARSET = offsetOf(ao, "charset");
            AO_ENCODING = offsetOf(ao, "encoding");
            AO_REPLY = offsetOf(ao, "reply");
            AO_REPLY_LEN = offsetOf(ao, "reply_len");
            Structure ms = new Message();
            MS_CONNECTION_ID = offsetOf(ms, "connection_id");
            MS_MESSAGE_SEQ = offsetOf(ms, "message_seq");
            MS_DATA = offsetOf(ms, "data");
            MS_LEN = offsetOf(ms, "len");
            MS_CHARSET = offsetOf(ms, "charset");
            MS_ENCODING = offsetOf(ms, "encoding");
            MS_DECODED = offsetOf(ms, "decoded");
        }

        /** A size_t at p + off. */
        static long size(Pointer p, int off) {
            return com.sun.jna.Native.SIZE_T_SIZE == 8 ? p.getLong(off) : (p.getInt(off) & 0xFFFFFFFFL);
        }

        /** Writes a size_t at p + off. */
        static void setSize(Pointer p, int off, long v) {
            if (com.sun.jna.Native.SIZE_T_SIZE == 8) {
                p.setLong(off, v);
            } else {
                p.setInt(off, (int) v);
            }
        }

        /** The bytes of a (pointer, size_t length) pair at p + ptrOff / p + lenOff: a copy, never null. */
        static byte[] bytes(Pointer p, int ptrOff, int lenOff) {
            long n = size(p, lenOff);
            Pointer d = n == 0 ? null : p.getPointer(ptrOff);
            return d == null ? new byte[0] : d.getByteArray(0, (int) n);
        }

        /** The NUL-terminated UTF-8 string whose pointer is at p + off ("" for NULL). */
        static String string(Pointer p, int off) {
            Pointer s = p.getPointer(off);
            return s == null ? "" : s.getString(0, "UTF-8");
        }
    }

    /** "name size off1 off2 ..." for the layout test (compared with the C compiler's view). */
    static String layout(Structure s) {
        StringBuilder b = new StringBuilder();
        b.append(s.getClass().getSimpleName()).append(' ').append(s.size());
        for (String f : fieldNames(s)) {
            b.append(' ').append(f).append('=').append(offsetOf(s, f));
        }
        return b.toString();
    }

    static java.util.List<String> fieldNames(Structure s) {
        return s.getClass().getAnnotation(FieldOrder.class) == null
                ? java.util.List.of()
                : java.util.Arrays.asList(s.getClass().getAnnotation(FieldOrder.class).value());
    }

    static int offsetOf(Structure s, String field) {
        return ((Layout) () -> s).offset(field);
    }

    /** Access to the protected Structure.fieldOffset. */
    private interface Layout {
        Structure get();

        default int offset(String f) {
            try {
                java.lang.reflect.Method m = Structure.class.getDeclaredMethod("fieldOffset", String.class);
                m.setAccessible(true);
                return (Integer) m.invoke(get(), f);
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException(e);
            }
        }
    }
}
