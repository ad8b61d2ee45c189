//! A redis-server that speaks only TLS, with a throwaway CA, server and client certificate
//! made at test time (rcgen: no openssl binary, nothing downloaded).

use std::net::TcpListener;
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use unstuck::testkit::{RedisProcess, RedisProcessOptions};

/// PEM files in a temp directory that lives as long as this value.
pub struct Certs {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here: trusting it alone must fail.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("a self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

/// A certificate for `names` signed by `issuer`: (certificate, key) as PEM.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("a leaf key");
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, "unstuck test");
    params.extended_key_usages = vec![purpose];
    let cert = params.signed_by(&key, issuer).expect("a signed leaf");
    (cert.pem(), key.serialize_pem())
}

/// A CA, a server certificate for 127.0.0.1 and localhost, a client certificate.
pub fn certs() -> Certs {
    let dir = tempfile::tempdir().expect("a temp dir");
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write a PEM file");
        path
    };
    let (ca_pem, issuer) = ca("unstuck test CA");
    let (server_cert, server_key) = leaf(
        &issuer,
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(&issuer, &["client"], ExtendedKeyUsagePurpose::ClientAuth);
    let (other_ca, _) = ca("some other CA");
    Certs {
        ca: write("ca.pem", &ca_pem),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        other_ca: write("other-ca.pem", &other_ca),
        _dir: dir,
    }
}

/// A redis-server listening only on a TLS port.
pub struct TlsRedis {
    pub process: RedisProcess,
    pub port: u16,
    pub certs: Certs,
}

impl TlsRedis {
    /// Starts one; `auth_clients` is redis.conf's `tls-auth-clients` (`no`: any client,
    /// `yes`: only clients with a certificate of our CA); `password`, if given, is then
    /// required of the `default` user.
    pub async fn start(auth_clients: &str, password: Option<&str>) -> Self {
        let certs = certs();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let path = |p: &PathBuf| p.display().to_string();
        let process = RedisProcess::start(RedisProcessOptions {
            extra_args: vec![
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                path(&certs.server_cert),
                "--tls-key-file".into(),
                path(&certs.server_key),
                "--tls-ca-cert-file".into(),
                path(&certs.ca),
                "--tls-auth-clients".into(),
                auth_clients.into(),
            ],
            ..Default::default()
        })
        .expect("a TLS redis-server starts (Debian's redis-server is built with TLS)");
        if let Some(password) = password {
            super::require_password(&process, password).await;
        }
        // The test support checks readiness on the plain port; close it now, so only
        // TLS is left (as with `--port 0`).
        let admin_url = match password {
            Some(password) => super::url("redis", &format!(":{password}"), process.port()),
            None => process.url().to_owned(),
        };
        let () = redis::cmd("CONFIG")
            .arg(&["SET", "port", "0"])
            .query_async(&mut super::admin(&admin_url).await)
            .await
            .expect("CONFIG SET port 0");
        Self {
            process,
            port,
            certs,
        }
    }

    /// `rediss://[userinfo@]127.0.0.1:<tls port>/`.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(userinfo) => super::url("rediss", userinfo, self.port),
            None => format!("rediss://127.0.0.1:{}/", self.port),
        }
    }
}
