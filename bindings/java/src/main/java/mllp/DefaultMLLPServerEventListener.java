package mllp;

/** An {@link MLLPServerEventListener} whose methods do nothing: override what you need. */
public class DefaultMLLPServerEventListener implements MLLPServerEventListener {
    public void ackIn(MLLPServerAckInEvent e) {}

    public void ackOut(MLLPServerAckOutEvent e) {}

    public void connected(MLLPServerConnectedEvent e) {}

    public void connectionRequest(MLLPServerConnectionRequestEvent e) {}

    public void disconnected(MLLPServerDisconnectedEvent e) {}

    public void duplicate(MLLPServerDuplicateEvent e) {}

    public void endTransfer(MLLPServerEndTransferEvent e) {}

    public void error(MLLPServerErrorEvent e) {}

    public void log(MLLPServerLogEvent e) {}

    public void message(MLLPServerMessageEvent e) {}

    public void SSLClientAuthentication(MLLPServerSSLClientAuthenticationEvent e) {}

    public void SSLConnectionRequest(MLLPServerSSLConnectionRequestEvent e) {}

    public void SSLStatus(MLLPServerSSLStatusEvent e) {}

    public void startTransfer(MLLPServerStartTransferEvent e) {}

    public void transfer(MLLPServerTransferEvent e) {}
}
