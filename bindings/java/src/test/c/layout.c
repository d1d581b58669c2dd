/* Prints the layout of the event structs of mllp.h, in the format of Structs.layout(). */
#include <stdio.h>
#include <stddef.h>
#include "mllp.h"

#define F(T, f) printf(" %s=%zu", #f, offsetof(T, f))

int main(void) {
    printf("ConnectionRequest %zu", sizeof(mllp_connection_request_event));
    F(mllp_connection_request_event, address); F(mllp_connection_request_event, port);
    F(mllp_connection_request_event, accept); printf("\n");
    printf("Status %zu", sizeof(mllp_status_event));
    F(mllp_status_event, connection_id); F(mllp_status_event, status_code);
    F(mllp_status_event, description); printf("\n");
    printf("TransferBoundary %zu", sizeof(mllp_transfer_boundary_event));
    F(mllp_transfer_boundary_event, connection_id); F(mllp_transfer_boundary_event, message_seq);
    F(mllp_transfer_boundary_event, charset); F(mllp_transfer_boundary_event, encoding);
    printf("\n");
    printf("Transfer %zu", sizeof(mllp_transfer_event));
    F(mllp_transfer_event, connection_id); F(mllp_transfer_event, bytes_transferred);
    F(mllp_transfer_event, data); F(mllp_transfer_event, len); printf("\n");
    printf("AckOut %zu", sizeof(mllp_ack_out_event));
    F(mllp_ack_out_event, connection_id); F(mllp_ack_out_event, message_seq);
    F(mllp_ack_out_event, accept); F(mllp_ack_out_event, reject_code);
    F(mllp_ack_out_event, message); F(mllp_ack_out_event, message_len);
    F(mllp_ack_out_event, defer); F(mllp_ack_out_event, charset);
    F(mllp_ack_out_event, encoding); F(mllp_ack_out_event, reply);
    F(mllp_ack_out_event, reply_len); printf("\n");
    printf("Message %zu", sizeof(mllp_message_event));
    F(mllp_message_event, connection_id); F(mllp_message_event, message_seq);
    F(mllp_message_event, data); F(mllp_message_event, len);
    F(mllp_message_event, charset); F(mllp_message_event, encoding);
    F(mllp_message_event, decoded); printf("\n");
    printf("Duplicate %zu", sizeof(mllp_duplicate_event));
    F(mllp_duplicate_event, connection_id); F(mllp_duplicate_event, message);
    F(mllp_duplicate_event, message_len); F(mllp_duplicate_event, control_id);
    F(mllp_duplicate_event, reply); F(mllp_duplicate_event, reply_len); printf("\n");
    printf("AckIn %zu", sizeof(mllp_ack_in_event));
    F(mllp_ack_in_event, connection_id); F(mllp_ack_in_event, accepted); printf("\n");
    printf("Error %zu", sizeof(mllp_error_event));
    F(mllp_error_event, connection_id); F(mllp_error_event, error_code);
    F(mllp_error_event, description); printf("\n");
    printf("Log %zu", sizeof(mllp_log_event));
    F(mllp_log_event, connection_id); F(mllp_log_event, log_level);
    F(mllp_log_event, message); F(mllp_log_event, log_type); printf("\n");
    printf("SslClientAuth %zu", sizeof(mllp_ssl_client_authentication_event));
    F(mllp_ssl_client_authentication_event, connection_id);
    F(mllp_ssl_client_authentication_event, cert_encoded);
    F(mllp_ssl_client_authentication_event, cert_encoded_len);
    F(mllp_ssl_client_authentication_event, cert_subject);
    F(mllp_ssl_client_authentication_event, cert_issuer);
    F(mllp_ssl_client_authentication_event, status);
    F(mllp_ssl_client_authentication_event, accept); printf("\n");
    printf("SslConnectionRequest %zu", sizeof(mllp_ssl_connection_request_event));
    F(mllp_ssl_connection_request_event, connection_id);
    F(mllp_ssl_connection_request_event, supported_cipher_suites);
    F(mllp_ssl_connection_request_event, supported_signature_algs);
    F(mllp_ssl_connection_request_event, certificate); printf("\n");
    printf("SslStatus %zu", sizeof(mllp_ssl_status_event));
    F(mllp_ssl_status_event, connection_id); F(mllp_ssl_status_event, message); printf("\n");
    printf("SendResult %zu", sizeof(mllp_send_result));
    F(mllp_send_result, message_id); F(mllp_send_result, ack_kind); F(mllp_send_result, attempts);
    printf("\n");
    printf("ClientAckIn %zu", sizeof(mllp_client_ack_in_event));
    F(mllp_client_ack_in_event, connection_id); F(mllp_client_ack_in_event, message_id);
    F(mllp_client_ack_in_event, kind); F(mllp_client_ack_in_event, control_id);
    F(mllp_client_ack_in_event, text); F(mllp_client_ack_in_event, data);
    F(mllp_client_ack_in_event, len); F(mllp_client_ack_in_event, matched); printf("\n");
    printf("SendDone %zu", sizeof(mllp_send_done_event));
    F(mllp_send_done_event, connection_id); F(mllp_send_done_event, message_id);
    F(mllp_send_done_event, control_id); F(mllp_send_done_event, result_code);
    F(mllp_send_done_event, description); F(mllp_send_done_event, ack_kind);
    F(mllp_send_done_event, attempts); printf("\n");
    printf("SslServerAuth %zu", sizeof(mllp_ssl_server_authentication_event));
    F(mllp_ssl_server_authentication_event, connection_id);
    F(mllp_ssl_server_authentication_event, cert_encoded);
    F(mllp_ssl_server_authentication_event, cert_encoded_len);
    F(mllp_ssl_server_authentication_event, cert_subject);
    F(mllp_ssl_server_authentication_event, cert_issuer);
    F(mllp_ssl_server_authentication_event, status);
    F(mllp_ssl_server_authentication_event, accept); printf("\n");
    printf("Metrics %zu", sizeof(mllp_metrics));
    F(mllp_metrics, connections_accepted); F(mllp_metrics, connections_refused);
    F(mllp_metrics, connections_open); F(mllp_metrics, messages_received);
    F(mllp_metrics, messages_accepted); F(mllp_metrics, messages_refused);
    F(mllp_metrics, messages_duplicate); F(mllp_metrics, bytes_in); F(mllp_metrics, bytes_out);
    F(mllp_metrics, acks_sent); F(mllp_metrics, naks_sent); F(mllp_metrics, errors);
    F(mllp_metrics, tls_handshakes_completed); F(mllp_metrics, tls_handshakes_failed);
    F(mllp_metrics, ack_latency_count); F(mllp_metrics, ack_latency_sum_seconds); printf("\n");
    return 0;
}
