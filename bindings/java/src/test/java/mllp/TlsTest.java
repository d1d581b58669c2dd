package mllp;

import static mllp.TestSupport.*;
import static org.junit.jupiter.api.Assertions.*;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * TLS (Certificate, the SSL properties and events, negotiated values) with javax.net.ssl
 * clients, and deferred acknowledgement. The certificates are made at test time with the
 * {@code openssl} command line tool in a temporary directory (no key is ever committed); the
 * tests are skipped when it is missing.
 */
public class TlsTest {
    private static final String PFX_PASSWORD = "s3cret";
    private static final byte[] MSG =
            "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||42\r".getBytes(StandardCharsets.UTF_8);
    private static final byte[] ACK_FRAME = {SB, ACK, EB, CR};
    private static final byte[] NAK_FRAME = {SB, NAK, EB, CR};

    private static Path pki;
    private static String pkiProblem;

    private final List<MLLPServer> servers = new ArrayList<>();

    @BeforeAll
    public static void makePki() throws Exception {
        try {
            Process v = new ProcessBuilder("openssl", "version").redirectErrorStream(true).start();
            v.getInputStream().readAllBytes();
            if (v.waitFor() != 0) {
                pkiProblem = "openssl version failed";
                return;
            }
        } catch (IOException e) {
            pkiProblem = "the openssl command line tool is not installed";
            return;
        }
        pki = Files.createTempDirectory("mllp-java-tls");
        String script = String.join("\n",
                "set -e",
                "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'",
                "openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj '/CN=MLLP Test CA'",
                "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
                        + "extendedKeyUsage=serverAuth\\n' > server.ext",
                "cp server.ext alt.ext",
                "printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.ext",
                "make() {",
                "  openssl req $ec -keyout \"$1.key\" -out \"$1.csr\" -subj \"/CN=$2/O=MLLP Test\"",
                "  openssl x509 -req -in \"$1.csr\" -CA ca.pem -CAkey ca.key -set_serial \"$3\" -days 2 "
                        + "-extfile \"$1.ext\" -out \"$1.pem\"",
                "  cat \"$1.key\" \"$1.pem\" > \"$1-key.pem\"",
                "}",
                "make server localhost 0x1001",
                "make alt alt.localhost 0x1002",
                "make client 'test client' 0x1003",
                "openssl pkcs12 -export -inkey server.key -in server.pem -certfile ca.pem -out server.pfx "
                        + "-passout pass:" + PFX_PASSWORD,
                "openssl pkcs12 -export -inkey client.key -in client.pem -out client.p12 -passout pass:pw",
                "");
        Files.writeString(pki.resolve("make-pki.sh"), script);
        Process p = new ProcessBuilder("sh", "make-pki.sh").directory(pki.toFile()).redirectErrorStream(true)
                .redirectOutput(pki.resolve("make-pki.log").toFile()).start();
        if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
            p.destroyForcibly();
            fail("making the test PKI failed: " + Files.readString(pki.resolve("make-pki.log")));
        }
    }

    @AfterAll
    public static void removePki() throws IOException {
        if (pki == null) {
            return;
        }
        try (Stream<Path> paths = Files.walk(pki)) {
            paths.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
        }
    }

    @BeforeEach
    public void needPki() {
        Assumptions.assumeTrue(pki != null, "skipped: " + pkiProblem);
    }

    @AfterEach
    public void closeServers() {
        for (MLLPServer s : servers) {
            s.close();
        }
    }

    private static String path(String name) {
        return pki.resolve(name).toString();
    }

    private MLLPServer tlsServer(MLLPServerEventListener l, boolean listen) throws MLLPException {
        MLLPServer s = new MLLPServer();
        servers.add(s);
        if (l != null) {
            s.addMLLPServerEventListener(l);
        }
        try (Certificate cert = new Certificate(Certificate.cstPEMKeyFile, path("server-key.pem"), "", "*")) {
            s.setSSLCert(cert); // the server keeps its own reference
        }
        s.setSSLEnabled(true);
        s.setLocalHost("127.0.0.1");
        s.setLocalPort(0);
        if (listen) {
            s.startListening();
        }
        return s;
    }

    // ---- a javax.net.ssl client trusting the test CA ----

    private static SSLContext clientContext(boolean withCert) throws Exception {
        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        try (InputStream in = Files.newInputStream(pki.resolve("ca.pem"))) {
            trust.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        KeyManagerFactory kmf = null;
        if (withCert) {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try (InputStream in = Files.newInputStream(pki.resolve("client.p12"))) {
                ks.load(in, "pw".toCharArray());
            }
            kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, "pw".toCharArray());
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf == null ? null : kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        return ctx;
    }

    private static SSLSocket connect(int port, String protocol, boolean withCert) throws Exception {
        Socket raw = new Socket();
        raw.connect(new InetSocketAddress("127.0.0.1", port), 5000);
        SSLSocket s = (SSLSocket) clientContext(withCert).getSocketFactory().createSocket(raw, "localhost", port, true);
        s.setEnabledProtocols(new String[] {protocol});
        s.setSoTimeout(5000);
        s.startHandshake();
        return s;
    }

    private static byte[] roundTrip(SSLSocket s) throws IOException {
        OutputStream out = s.getOutputStream();
        out.write(frame(MSG));
        out.flush();
        return readN(s.getInputStream(), 4);
    }

    private static byte[] readN(InputStream in, int n) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        while (b.size() < n) {
            int c = in.read();
            if (c < 0) {
                break;
            }
            b.write(c);
        }
        return b.toByteArray();
    }

    /** True when the server closed the TLS connection instead of answering. */
    private static boolean refused(SSLSocket s) {
        try {
            return roundTrip(s).length == 0;
        } catch (IOException e) {
            return true; // alert, reset
        }
    }

    // ------------------------------------------------------------------ Certificate

    @Test
    @Timeout(20)
    public void certificateFieldsFromFilesAndBlobs() throws Exception {
        Certificate pem = new Certificate(Certificate.cstPEMKeyFile, path("server-key.pem"), "", "*");
        assertEquals("CN=localhost, O=MLLP Test", pem.getSubject());
        assertEquals("CN=MLLP Test CA", pem.getIssuer());
        assertTrue(pem.getSerialNumber().endsWith("1001"), pem.getSerialNumber());
        assertEquals(40, pem.getThumbprintSHA1().length());
        assertEquals(64, pem.getThumbprintSHA256().length());
        assertFalse(pem.getEffectiveDate().isEmpty());
        assertFalse(pem.getExpirationDate().isEmpty());
        assertTrue(pem.isPrivateKeyAvailable());
        X509Certificate x = (X509Certificate) CertificateFactory.getInstance("X.509")
                .generateCertificate(new java.io.ByteArrayInputStream(pem.getEncodedB()));
        assertEquals(0x1001, x.getSerialNumber().intValue()); // Encoded is the DER of this certificate
        assertArrayEquals(pem.getEncodedB(), java.util.Base64.getDecoder().decode(pem.getEncoded()));

        byte[] pfx = Files.readAllBytes(pki.resolve("server.pfx"));
        List<Certificate> same = List.of(
                new Certificate(Certificate.cstPFXFile, path("server.pfx"), PFX_PASSWORD, "localhost"),
                new Certificate(Certificate.cstPFXBlob, pfx, PFX_PASSWORD, "*"),
                new Certificate(Certificate.cstPEMKeyBlob, Files.readString(pki.resolve("server-key.pem")), "", null),
                new Certificate(Certificate.cstPublicKeyFile, path("server.pem"), "", "*"),
                new Certificate(Certificate.cstPFXFile, path("server.pfx"), PFX_PASSWORD,
                        "Thumbprint=" + pem.getThumbprintSHA1()));
        for (Certificate c : same) {
            assertEquals(pem, c);
            assertEquals(pem.getThumbprintSHA256(), c.getThumbprintSHA256());
        }
        assertFalse(same.get(3).isPrivateKeyAvailable());
        assertEquals(Certificate.cstPFXFile, same.get(0).getStoreType());
        assertEquals(path("server.pfx"), same.get(0).getStore());

        // close(): idempotent, fields stay readable, the handle is gone.
        for (Certificate c : same) {
            c.close();
            c.close();
            assertTrue(c.isClosed());
            assertFalse(c.getSubject().isEmpty());
        }
        MLLPServer s = new MLLPServer();
        servers.add(s);
        MLLPException e = assertThrows(MLLPException.class, () -> s.setSSLCert(same.get(0)));
        assertEquals(211, e.getCode());
        pem.close();
    }

    @Test
    @Timeout(20)
    public void certificateErrors() throws Exception {
        MLLPException e = assertThrows(MLLPException.class,
                () -> new Certificate(Certificate.cstPFXFile, path("server.pfx"), "wrong password", "*"));
        assertEquals(2020, e.getCode());
        assertFalse(e.getMessage().isEmpty());
        byte[] pfx = Files.readAllBytes(pki.resolve("server.pfx"));
        e = assertThrows(MLLPException.class, () -> new Certificate(Certificate.cstPFXBlob, pfx, "wrong", "*"));
        assertEquals(2020, e.getCode());
        e = assertThrows(MLLPException.class,
                () -> new Certificate(Certificate.cstPEMKeyFile, path("server-key.pem"), "", "CN=nobody"));
        assertEquals(2020, e.getCode());
        e = assertThrows(MLLPException.class,
                () -> new Certificate(Certificate.cstPFXFile, path("missing.pfx"), PFX_PASSWORD, "*"));
        assertEquals(303, e.getCode());
    }

    @Test
    @Timeout(20)
    public void unreachableCertificatesAreCleaned() throws Exception {
        // Many unclosed certificates: the Cleaner frees them; nothing crashes.
        for (int i = 0; i < 200; i++) {
            new Certificate(Certificate.cstPEMKeyFile, path("server-key.pem"), "", "*");
        }
        System.gc();
        Thread.sleep(50);
    }

    @Test
    @Timeout(20)
    public void sslProperties() throws Exception {
        MLLPServer s = new MLLPServer();
        servers.add(s);
        assertFalse(s.isSSLEnabled());
        assertFalse(s.isSSLAuthenticateClients());
        assertNull(s.getSSLCert());
        s.setSSLEnabled(true);
        s.setSSLAuthenticateClients(true);
        assertTrue(s.isSSLEnabled());
        assertTrue(s.isSSLAuthenticateClients());
        Certificate c = new Certificate(Certificate.cstPFXFile, path("server.pfx"), PFX_PASSWORD, "*");
        s.setSSLCert(c);
        c.close();
        try (Certificate got = s.getSSLCert()) {
            assertEquals(c, got);
            assertEquals("CN=localhost, O=MLLP Test", got.getSubject());
            assertTrue(got.isPrivateKeyAvailable());
        }
        s.setSSLCert(null);
        assertNull(s.getSSLCert());
        s.setLocalHost("127.0.0.1");
        MLLPException e = assertThrows(MLLPException.class, s::startListening);
        assertEquals(2020, e.getCode()); // TLS without a certificate
    }

    // ------------------------------------------------------------------ TLS round trips

    private void roundTrip(String protocol, String expectedVersion) throws Exception {
        List<MLLPServerSSLStatusEvent> statuses = new CopyOnWriteArrayList<>();
        List<MLLPServerSSLConnectionRequestEvent> requests = new CopyOnWriteArrayList<>();
        Recorder r = new Recorder() {
            @Override
            public void SSLStatus(MLLPServerSSLStatusEvent e) {
                statuses.add(e);
            }

            @Override
            public void SSLConnectionRequest(MLLPServerSSLConnectionRequestEvent e) {
                requests.add(e);
            }
        };
        MLLPServer s = tlsServer(r, true);
        try (SSLSocket c = connect(s.getLocalPort(), protocol, false)) {
            assertEquals(protocol, c.getSession().getProtocol());
            assertArrayEquals(ACK_FRAME, roundTrip(c));
            MLLPServerTransferEvent t = r.next(MLLPServerTransferEvent.class, 5000);
            assertArrayEquals(MSG, t.data);
            MLLPConnection conn = s.getConnection(t.connectionId);
            assertEquals(expectedVersion, conn.getSSLNegotiatedVersion());
            assertEquals(expectedVersion, conn.getSSLNegotiated("SSLNegotiatedVersion"));
            assertFalse(conn.getSSLNegotiatedCipherSuite().isEmpty());
            assertFalse(statuses.isEmpty());
            for (MLLPServerSSLStatusEvent e : statuses) {
                assertEquals(t.connectionId, e.connectionId);
                assertFalse(e.message.isEmpty());
            }
            assertEquals(1, requests.size());
            assertEquals(t.connectionId, requests.get(0).connectionId);
            assertFalse(requests.get(0).supportedCipherSuites.isEmpty());
        }
    }

    @Test
    @Timeout(20)
    public void tlsRoundTripTls13() throws Exception {
        roundTrip("TLSv1.3", "TLS1.3");
    }

    @Test
    @Timeout(20)
    public void tlsRoundTripTls12() throws Exception {
        roundTrip("TLSv1.2", "TLS1.2");
    }

    @Test
    @Timeout(20)
    public void sslConnectionRequestPresentsAnotherCertificate() throws Exception {
        Certificate alt = new Certificate(Certificate.cstPEMKeyFile, path("alt-key.pem"), "", "*");
        AtomicBoolean referenceFields = new AtomicBoolean();
        MLLPServer s = tlsServer(new DefaultMLLPServerEventListener() {
            @Override
            public void SSLConnectionRequest(MLLPServerSSLConnectionRequestEvent e) {
                if (referenceFields.get()) {
                    e.certStoreType = Certificate.cstPEMKeyFile; // the reference's fields
                    e.certStore = path("alt-key.pem");
                } else {
                    try { // only the event holds it: the binding keeps it alive
                        e.certificate = new Certificate(Certificate.cstPEMKeyFile, path("alt-key.pem"), "", "*");
                    } catch (MLLPException ex) {
                        throw new AssertionError(ex);
                    }
                }
            }
        }, true);
        for (boolean ref : new boolean[] {false, true}) {
            referenceFields.set(ref);
            try (SSLSocket c = connect(s.getLocalPort(), "TLSv1.3", false)) {
                java.security.cert.Certificate peer = c.getSession().getPeerCertificates()[0];
                assertArrayEquals(alt.getEncodedB(), peer.getEncoded());
                System.gc();
                assertArrayEquals(ACK_FRAME, roundTrip(c));
            }
        }
        alt.close();
    }

    @Test
    @Timeout(20)
    public void sslClientAuthenticationOverride() throws Exception {
        BlockingQueue<MLLPServerSSLClientAuthenticationEvent> auths = new LinkedBlockingQueue<>();
        BlockingQueue<Integer> errors = new LinkedBlockingQueue<>();
        AtomicBoolean refuse = new AtomicBoolean();
        MLLPServer s = tlsServer(new DefaultMLLPServerEventListener() {
            @Override
            public void SSLClientAuthentication(MLLPServerSSLClientAuthenticationEvent e) {
                MLLPServerSSLClientAuthenticationEvent copy = new MLLPServerSSLClientAuthenticationEvent(e.getSource());
                copy.accept = e.accept;
                copy.status = e.status;
                copy.certSubject = e.certSubject;
                copy.certIssuer = e.certIssuer;
                copy.certEncoded = e.certEncoded;
                auths.add(copy);
                if (refuse.get()) {
                    e.accept = false; // refuse a client the library would accept
                } else if (e.certEncoded.length == 0) {
                    e.accept = true; // accept one it would refuse
                }
            }

            @Override
            public void error(MLLPServerErrorEvent e) {
                errors.add(e.errorCode);
            }
        }, false);
        s.setSSLAuthenticateClients(true);
        s.config("SSLClientCACerts=" + Files.readString(pki.resolve("ca.pem")));
        s.startListening();
        byte[] clientDer;
        try (Certificate cc = new Certificate(Certificate.cstPublicKeyFile, path("client.pem"), "", "*")) {
            clientDer = cc.getEncodedB();
        }

        // A good certificate: recommended and kept.
        try (SSLSocket c = connect(s.getLocalPort(), "TLSv1.3", true)) {
            assertArrayEquals(ACK_FRAME, roundTrip(c));
        }
        MLLPServerSSLClientAuthenticationEvent a = auths.poll(5, TimeUnit.SECONDS);
        assertNotNull(a);
        assertTrue(a.accept);
        assertEquals("OK", a.status);
        assertEquals("CN=test client, O=MLLP Test", a.certSubject);
        assertEquals("CN=MLLP Test CA", a.certIssuer);
        assertArrayEquals(clientDer, a.certEncoded);

        // The same certificate refused by the listener: closed, no ACK, Error 2022.
        refuse.set(true);
        try (SSLSocket c = connect(s.getLocalPort(), "TLSv1.3", true)) {
            assertTrue(refused(c));
        }
        a = auths.poll(5, TimeUnit.SECONDS);
        assertNotNull(a);
        assertTrue(a.accept, "the library recommended it");
        Integer code = errors.poll(5, TimeUnit.SECONDS);
        assertEquals(Integer.valueOf(2022), code);

        // No certificate: the library recommends refusing; the listener accepts.
        refuse.set(false);
        try (SSLSocket c = connect(s.getLocalPort(), "TLSv1.2", false)) {
            assertArrayEquals(ACK_FRAME, roundTrip(c));
        }
        a = auths.poll(5, TimeUnit.SECONDS);
        assertNotNull(a);
        assertFalse(a.accept);
        assertNotEquals("OK", a.status);
        assertEquals(0, a.certEncoded.length);
    }

    // ------------------------------------------------------------------ deferred acknowledgement

    @Test
    @Timeout(20)
    public void deferredAckSentByAcknowledgeFromAnotherThread() throws Exception {
        for (boolean accept : new boolean[] {true, false}) {
            BlockingQueue<MLLPServerAckOutEvent> pending = new LinkedBlockingQueue<>();
            MLLPServer s = listening(new DefaultMLLPServerEventListener() {
                @Override
                public void ackOut(MLLPServerAckOutEvent e) {
                    assertFalse(e.defer);
                    e.defer = true;
                    pending.add(e);
                }
            });
            servers.add(s);
            String cid;
            long seq;
            try (Client c = new Client(s.getLocalPort())) {
                c.sendFrame(MSG);
                MLLPServerAckOutEvent e = pending.poll(5, TimeUnit.SECONDS);
                assertNotNull(e);
                cid = e.connectionId;
                seq = e.messageSeq;
                assertEquals(1, seq);
                c.socket.setSoTimeout(300);
                assertThrows(SocketTimeoutException.class, () -> c.in.read()); // nothing yet
                c.socket.setSoTimeout(5000);
                Thread decider = new Thread(() -> {
                    try {
                        s.acknowledge(cid, seq, accept);
                    } catch (MLLPException ex) {
                        throw new AssertionError(ex);
                    }
                });
                decider.start();
                decider.join(5000);
                assertArrayEquals(accept ? ACK_FRAME : NAK_FRAME, c.readFrameRaw());
                s.acknowledge(cid, 99, true); // not awaiting a decision: ignored
            }
            waitUntil("the connection closed", 5000, () -> s.getConnections().isEmpty());
            MLLPException ex = assertThrows(MLLPException.class, () -> s.acknowledge(cid, seq, true));
            assertEquals(2002, ex.getCode());
        }
    }

    // ---- the client (MLLPClient) over TLS ----

    @Test
    @Timeout(30)
    public void clientSendsOverTls() throws Exception {
        MLLPServer s = tlsServer(null, true);
        List<MLLPClientSSLServerAuthenticationEvent> auths = new CopyOnWriteArrayList<>();
        List<String> statuses = new CopyOnWriteArrayList<>();
        AtomicBoolean override = new AtomicBoolean();
        AtomicBoolean verdict = new AtomicBoolean();
        try (MLLPClient c = new MLLPClient("127.0.0.1", s.getLocalPort())) {
            c.addMLLPClientEventListener(new MLLPClientEventListener() {
                @Override
                public void SSLServerAuthentication(MLLPClientSSLServerAuthenticationEvent e) {
                    MLLPClientSSLServerAuthenticationEvent copy = new MLLPClientSSLServerAuthenticationEvent(c);
                    copy.accept = e.accept;
                    copy.status = e.status;
                    copy.certSubject = e.certSubject;
                    copy.certIssuer = e.certIssuer;
                    copy.certEncoded = e.certEncoded;
                    auths.add(copy);
                    if (override.get()) {
                        e.setAccept(verdict.get());
                    }
                }

                @Override
                public void SSLStatus(MLLPClientSSLStatusEvent e) {
                    statuses.add(e.message);
                }
            });
            c.setTimeout(5);
            c.setSSLEnabled(true);
            c.config("MaxRetries=0");
            c.config("SSLServerCACerts=" + Files.readString(pki.resolve("ca.pem")));

            // Trusted through SSLServerCACerts: the library's verdict is kept.
            assertEquals(AckKind.ACK, c.send(MSG).getAckKind());
            assertEquals(1, auths.size());
            MLLPClientSSLServerAuthenticationEvent a = auths.get(0);
            assertTrue(a.accept);
            assertEquals("OK", a.status);
            assertTrue(a.certSubject.contains("localhost"), a.certSubject);
            assertTrue(a.certIssuer.contains("MLLP Test CA"), a.certIssuer);
            try (Certificate sc = new Certificate(Certificate.cstPublicKeyFile, path("server.pem"), "", "*")) {
                assertArrayEquals(sc.getEncodedB(), a.certEncoded);
            }
            assertFalse(statuses.isEmpty());
            assertFalse(c.config("SSLNegotiatedVersion").isEmpty());
            c.disconnect();
            // A resumed session (ReuseSSLSession, default True) verifies nothing and raises no
            // SSLServerAuthentication: full handshakes from here on.
            c.config("ReuseSSLSession=False");

            // Refused by the listener although the library would accept: 2023.
            override.set(true);
            verdict.set(false);
            MLLPException ex = assertThrows(MLLPException.class, c::connect);
            assertEquals(MLLPException.TLS_SERVER_REJECTED, ex.getCode());
            assertFalse(c.isConnected());

            // Not trusted (no CA for it: the system roots): refused, unless the listener accepts.
            c.config("SSLServerCACerts=");
            override.set(false);
            auths.clear();
            assertEquals(MLLPException.TLS_SERVER_REJECTED,
                    assertThrows(MLLPException.class, c::connect).getCode());
            assertEquals(1, auths.size());
            assertFalse(auths.get(0).accept);
            assertNotEquals("OK", auths.get(0).status);
            override.set(true);
            verdict.set(true);
            assertEquals(AckKind.ACK, c.send(MSG).getAckKind());
        }
    }

    @Test
    @Timeout(30)
    public void clientPresentsItsCertificate() throws Exception {
        BlockingQueue<MLLPServerSSLClientAuthenticationEvent> auths = new LinkedBlockingQueue<>();
        MLLPServer s = tlsServer(new DefaultMLLPServerEventListener() {
            @Override
            public void SSLClientAuthentication(MLLPServerSSLClientAuthenticationEvent e) {
                auths.add(e);
            }
        }, false);
        s.setSSLAuthenticateClients(true);
        s.config("SSLClientCACerts=" + Files.readString(pki.resolve("ca.pem")));
        s.startListening();
        try (MLLPClient c = new MLLPClient("127.0.0.1", s.getLocalPort())) {
            c.setTimeout(5);
            c.setSSLEnabled(true);
            c.config("SSLServerCACerts=" + Files.readString(pki.resolve("ca.pem")));
            try (Certificate cc = new Certificate(Certificate.cstPEMKeyFile, path("client-key.pem"), "", "*")) {
                c.setSSLCert(cc);   // the client keeps its own reference
            }
            assertEquals(AckKind.ACK, c.send(MSG).getAckKind());
        }
        MLLPServerSSLClientAuthenticationEvent a = auths.poll(5, TimeUnit.SECONDS);
        assertNotNull(a);
        assertTrue(a.accept);
        assertTrue(a.certSubject.contains("test client"), a.certSubject);
    }
}
