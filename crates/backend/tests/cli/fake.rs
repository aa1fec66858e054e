//! A loopback HTTP(S) server for the services no installable emulator stands for (container
//! credentials, instance metadata with its token check, and later the cloud APIs): each test
//! gives a handler written from the provider's published REST reference, which checks what the
//! real service checks and answers as it does.
//!
//! One request per connection (`Connection: close`), every request recorded for the test to
//! inspect, the listener on a free 127.0.0.1 port, stopped when the guard drops. HTTPS servers
//! present a certificate for `127.0.0.1` and `localhost` issued by a CA made for the test
//! ([`TestCa`]), which the backend is given as its custom CA: verification stays on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A request as the handler sees it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// Path and query, as sent.
    pub(crate) target: String,
    /// Header names lower-cased.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The path without the query.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// An answer.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
        }
    }

    pub(crate) fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_owned(),
        }
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A CA made for one test, and the server certificate it issued.
pub(crate) struct TestCa {
    /// The CA certificate, PEM.
    pub(crate) ca_pem: String,
    server: Arc<rustls::ServerConfig>,
    /// The same server, requiring a client certificate issued by the CA (mutual TLS).
    server_mtls: Arc<rustls::ServerConfig>,
    /// A client certificate and its key (PEM) issued by the CA.
    pub(crate) client: (String, String),
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "keyturn test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA cert");
        let key = rcgen::KeyPair::generate().expect("server key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        let cert = params.signed_by(&key, &ca).expect("server cert");
        let client_key = rcgen::KeyPair::generate().expect("client key");
        let mut client_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("client params");
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "keyturn-client");
        let client_cert = client_params
            .signed_by(&client_key, &ca)
            .expect("client cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("CA root");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .expect("client verifier");
        let builder = || {
            rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
        };
        let chain = vec![cert.der().clone()];
        let server_key = || rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let server = builder()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), server_key())
            .expect("server TLS config");
        let server_mtls = builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, server_key())
            .expect("mutual TLS config");
        TestCa {
            ca_pem: ca.pem(),
            server: Arc::new(server),
            server_mtls: Arc::new(server_mtls),
            client: (client_cert.pem(), client_key.serialize_pem()),
        }
    }
}

/// A running server; stops when dropped.
pub(crate) struct FakeServer {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// `127.0.0.1:PORT`.
    pub(crate) address: String,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    /// Serves plain HTTP.
    pub(crate) fn http(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeServer {
        FakeServer::start(None, handler)
    }

    /// Serves HTTPS with a certificate of `ca`.
    pub(crate) fn https(
        ca: &TestCa,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        FakeServer::start(Some(Arc::clone(&ca.server)), handler)
    }

    /// Serves HTTPS with a certificate of `ca`, to clients with a certificate of `ca` only.
    pub(crate) fn https_mutual(
        ca: &TestCa,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        FakeServer::start(Some(Arc::clone(&ca.server_mtls)), handler)
    }

    fn start(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local addr").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let scheme = if tls.is_some() { "https" } else { "http" };
        {
            let (requests, stop) = (Arc::clone(&requests), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, handler) = (Arc::clone(&requests), Arc::clone(&handler));
                    let tls = tls.clone();
                    std::thread::spawn(move || match tls {
                        None => serve(stream, &*handler, &requests),
                        Some(config) => {
                            let Ok(connection) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            let stream = rustls::StreamOwned::new(connection, stream);
                            serve(stream, &*handler, &requests);
                        }
                    });
                }
            });
        }
        FakeServer {
            url: format!("{scheme}://{address}"),
            address,
            requests,
            stop,
        }
    }

    /// Every request received so far.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.address);
    }
}

fn serve(mut stream: impl Read + Write, handler: &Handler, requests: &Mutex<Vec<Request>>) {
    let Some(request) = read_request(&mut BufReader::new(&mut stream)) else {
        return;
    };
    let writer = &mut stream;
    let reply = handler(&request);
    requests.lock().expect("requests").push(request);
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        reply.status,
        reply.body.len()
    );
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(reply.body.as_bytes());
    let _ = writer.flush();
}

fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
