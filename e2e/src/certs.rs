//! Certificates and keys for the local control plane, generated fresh for every run.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// Paths of the PEM files the control plane and its clients use.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub sa_public: PathBuf,
    pub sa_private: PathBuf,
}

/// Where a real-node guest reaches the host's API server (QEMU user networking forwards this
/// address, and only it, to the API server on the host's 127.0.0.1).
pub const GUEST_APISERVER_IP: &str = "10.0.2.100";
/// The `kubernetes` Service's ClusterIP (first address of `--service-cluster-ip-range`).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// The local CA: one name, signing only.
fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "palisade-local-ca");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn leaf(
    cn: &str,
    org: Option<&str>,
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(org) = org {
        params.distinguished_name.push(DnType::OrganizationName, org);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl Pki {
    /// Generates a CA, the API server's serving certificate, an admin client certificate
    /// (group system:masters) and the service-account key pair. The serving certificate names
    /// every address a client uses: 127.0.0.1 and localhost on the host, the address a
    /// real-node guest reaches it at, and the in-cluster `kubernetes` Service (IP and names),
    /// so no client ever skips verification.
    pub fn generate(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params()?.self_signed(&ca_key)?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params()?, ca_key);

        let server = leaf(
            "kube-apiserver",
            None,
            vec![
                "localhost".into(),
                "127.0.0.1".into(),
                GUEST_APISERVER_IP.into(),
                KUBERNETES_SERVICE_IP.into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "kubernetes.default.svc.cluster.local".into(),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        )?;
        let admin = leaf(
            "palisade-admin",
            Some("system:masters"),
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        )?;
        let sa = KeyPair::generate()?;

        let pki = Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_public: dir.join("sa.pub"),
            sa_private: dir.join("sa.key"),
        };
        std::fs::write(&pki.ca_cert, ca_cert.pem())?;
        std::fs::write(&pki.ca_key, ca_key_pem)?;
        std::fs::write(&pki.server_cert, server.0)?;
        std::fs::write(&pki.server_key, server.1)?;
        std::fs::write(&pki.admin_cert, admin.0)?;
        std::fs::write(&pki.admin_key, admin.1)?;
        std::fs::write(&pki.sa_public, sa.public_key_pem())?;
        std::fs::write(&pki.sa_private, sa.serialize_pem())?;
        Ok(pki)
    }

    /// Issues a client certificate signed by this CA for user `cn` in group `org` (e.g.
    /// `system:node:<name>` in `system:nodes`, which the Node authorizer and NodeRestriction
    /// act on), written as `<dir>/<file>.crt` and `.key`; returns both paths.
    pub fn client_cert(&self, dir: &Path, file: &str, cn: &str, org: Option<&str>) -> Result<(PathBuf, PathBuf)> {
        // The CA's parameters are fixed, so its key and them make the same issuer again.
        let ca_key = KeyPair::from_pem(&std::fs::read_to_string(&self.ca_key)?)?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let (cert, key) = leaf(cn, org, vec![], ExtendedKeyUsagePurpose::ClientAuth, &issuer)?;
        let (cert_path, key_path) = (dir.join(format!("{file}.crt")), dir.join(format!("{file}.key")));
        std::fs::write(&cert_path, cert)?;
        std::fs::write(&key_path, key)?;
        Ok((cert_path, key_path))
    }
}
