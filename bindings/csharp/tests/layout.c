/* Prints the layout of every event struct of mllp.h as the C compiler lays it out, for the
 * C# test "header" (Tests.exe --layout FILE), which compares it with Marshal.SizeOf /
 * Marshal.OffsetOf of the [StructLayout] structs in src/Native.cs:
 *   struct <C typedef> <C# struct> <sizeof>
 *   field <C field> <offsetof> <sizeof> (C# field: the C name in PascalCase)
 * The test also checks that every "} mllp_..._event;" of the header is listed here. */
#include <stdio.h>
#include <stddef.h>
#include "mllp.h"

#define S(T, CS) printf("struct %s %s %zu\n", #T, CS, sizeof(T))
#define F(T, f) printf("field %s %zu %zu\n", #f, offsetof(T, f), sizeof(((T *)0)->f))

int main(void) {
    S(mllp_connection_request_event, "ConnectionRequestEvent");
    F(mllp_connection_request_event, address);
    F(mllp_connection_request_event, port);
    F(mllp_connection_request_event, accept);

    S(mllp_status_event, "StatusEvent");
    F(mllp_status_event, connection_id);
    F(mllp_status_event, status_code);
    F(mllp_status_event, description);

    S(mllp_transfer_boundary_event, "TransferBoundaryEvent");
    F(mllp_transfer_boundary_event, connection_id);
    F(mllp_transfer_boundary_event, message_seq);
    F(mllp_transfer_boundary_event, charset);
    F(mllp_transfer_boundary_event, encoding);

    S(mllp_transfer_event, "TransferEvent");
    F(mllp_transfer_event, connection_id);
    F(mllp_transfer_event, bytes_transferred);
    F(mllp_transfer_event, data);
    F(mllp_transfer_event, len);

    S(mllp_message_event, "MessageEvent");
    F(mllp_message_event, connection_id);
    F(mllp_message_event, message_seq);
    F(mllp_message_event, data);
    F(mllp_message_event, len);
    F(mllp_message_event, charset);
    F(mllp_message_event, encoding);
    F(mllp_message_event, decoded);

    S(mllp_duplicate_event, "DuplicateEvent");
    F(mllp_duplicate_event, connection_id);
    F(mllp_duplicate_event, message);
    F(mllp_duplicate_event, message_len);
    F(mllp_duplicate_event, control_id);
    F(mllp_duplicate_event, reply);
    F(mllp_duplicate_event, reply_len);

    S(mllp_ack_out_event, "AckOutEvent");
    F(mllp_ack_out_event, connection_id);
    F(mllp_ack_out_event, message_seq);
    F(mllp_ack_out_event, accept);
    F(mllp_ack_out_event, reject_code);
    F(mllp_ack_out_event, message);
    F(mllp_ack_out_event, message_len);
    F(mllp_ack_out_event, defer);
    F(mllp_ack_out_event, charset);
    F(mllp_ack_out_event, encoding);
    F(mllp_ack_out_event, reply);
    F(mllp_ack_out_event, reply_len);

    S(mllp_ack_in_event, "AckInEvent");
    F(mllp_ack_in_event, connection_id);
    F(mllp_ack_in_event, accepted);

    S(mllp_error_event, "ErrorEvent");
    F(mllp_error_event, connection_id);
    F(mllp_error_event, error_code);
    F(mllp_error_event, description);

    S(mllp_log_event, "LogEvent");
    F(mllp_log_event, connection_id);
    F(mllp_log_event, log_level);
    F(mllp_log_event, message);
    F(mllp_log_event, log_type);

    S(mllp_ssl_client_authentication_event, "SslClientAuthenticationEvent");
    F(mllp_ssl_client_authentication_event, connection_id);
    F(mllp_ssl_client_authentication_event, cert_encoded);
    F(mllp_ssl_client_authentication_event, cert_encoded_len);
    F(mllp_ssl_client_authentication_event, cert_subject);
    F(mllp_ssl_client_authentication_event, cert_issuer);
    F(mllp_ssl_client_authentication_event, status);
    F(mllp_ssl_client_authentication_event, accept);

    S(mllp_ssl_connection_request_event, "SslConnectionRequestEvent");
    F(mllp_ssl_connection_request_event, connection_id);
    F(mllp_ssl_connection_request_event, supported_cipher_suites);
    F(mllp_ssl_connection_request_event, supported_signature_algs);
    F(mllp_ssl_connection_request_event, certificate);

    S(mllp_ssl_status_event, "SslStatusEvent");
    F(mllp_ssl_status_event, connection_id);
    F(mllp_ssl_status_event, message);
    S(mllp_send_result, "NativeSendResult");
    F(mllp_send_result, message_id);
    F(mllp_send_result, ack_kind);
    F(mllp_send_result, attempts);

    S(mllp_client_ack_in_event, "ClientAckInEvent");
    F(mllp_client_ack_in_event, connection_id);
    F(mllp_client_ack_in_event, message_id);
    F(mllp_client_ack_in_event, kind);
    F(mllp_client_ack_in_event, control_id);
    F(mllp_client_ack_in_event, text);
    F(mllp_client_ack_in_event, data);
    F(mllp_client_ack_in_event, len);
    F(mllp_client_ack_in_event, matched);

    S(mllp_send_done_event, "SendDoneEvent");
    F(mllp_send_done_event, connection_id);
    F(mllp_send_done_event, message_id);
    F(mllp_send_done_event, control_id);
    F(mllp_send_done_event, result_code);
    F(mllp_send_done_event, description);
    F(mllp_send_done_event, ack_kind);
    F(mllp_send_done_event, attempts);

    S(mllp_ssl_server_authentication_event, "SslServerAuthenticationEvent");
    F(mllp_ssl_server_authentication_event, connection_id);
    F(mllp_ssl_server_authentication_event, cert_encoded);
    F(mllp_ssl_server_authentication_event, cert_encoded_len);
    F(mllp_ssl_server_authentication_event, cert_subject);
    F(mllp_ssl_server_authentication_event, cert_issuer);
    F(mllp_ssl_server_authentication_event, status);
    F(mllp_ssl_server_authentication_event, accept);

    S(mllp_metrics, "MetricsNative");
    F(mllp_metrics, connections_accepted);
    F(mllp_metrics, connections_refused);
    F(mllp_metrics, connections_open);
    F(mllp_metrics, messages_received);
    F(mllp_metrics, messages_accepted);
    F(mllp_metrics, messages_refused);
    F(mllp_metrics, messages_duplicate);
    F(mllp_metrics, bytes_in);
    F(mllp_metrics, bytes_out);
    F(mllp_metrics, acks_sent);
    F(mllp_metrics, naks_sent);
    F(mllp_metrics, errors);
    F(mllp_metrics, tls_handshakes_completed);
    F(mllp_metrics, tls_handshakes_failed);
    F(mllp_metrics, ack_latency_count);
    F(mllp_metrics, ack_latency_sum_seconds);

    return 0;
}
