//! Encryption in transit, end to end: the S3 endpoint speaks only HTTPS with a certificate
//! from the cluster's local CA and picks up a replaced certificate without a restart; every
//! internal gRPC service (Raft, meta, key service, data) takes calls only from clients with a
//! certificate of the cluster CA whose role may make them, and a refused call changes nothing.

use crate::harness::{TestCluster, phase};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tessera_client::shard::ShardWriteSpec;
use tessera_client::tls::{ClusterTls, endpoint};
use tessera_client::{DataClient, MetaClient, MetaClientError, ShardId, ShardWriter};
use tessera_core::blob::Generation;
use tessera_core::layout::Layout;
use tessera_core::names::{BucketName, DataId};
use tessera_core::object::{Bucket, VersioningState};
use tessera_devcluster::NodeRole;
use tessera_devcluster::certs;
use tessera_proto::meta::v1 as meta_pb;
use tessera_proto::meta::v1::meta_service_client::MetaServiceClient;
use tessera_proto::raft::v1 as raft_pb;
use tessera_proto::raft::v1::raft_service_client::RaftServiceClient;
use tessera_runtime::tls::{ClusterCa, Role, TlsPaths, Validity, write_issued};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// The leaf certificate the S3 endpoint presents to a client that trusts `ca`.
async fn served_certificate(addr: &str, ca: &std::path::Path) -> Option<Vec<u8>> {
    handshake(addr, ca).await.map(|(cert, _)| cert)
}

/// A TLS handshake with the S3 endpoint offering h2 and http/1.1 by ALPN, as the AWS SDKs do:
/// the leaf certificate presented and the protocol chosen.
async fn handshake(addr: &str, ca: &std::path::Path) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(ca).ok()?;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.ok()?).ok()?;
    }
    let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls_pki_types::ServerName::try_from("localhost").ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()?;
    let (_, conn) = tls.get_ref();
    Some((
        conn.peer_certificates()?.first()?.to_vec(),
        conn.alpn_protocol().map(<[u8]>::to_vec),
    ))
}

fn meta_as(tc: &TestCluster, tls: &ClusterTls) -> MetaClient {
    MetaClient::with_tls(tc.cluster.layout().meta_endpoints(), Some(tls))
        .with_deadline(Duration::from_secs(3))
}

fn rejected_with(result: Result<impl std::fmt::Debug, MetaClientError>, code: Code, what: &str) {
    match result {
        Err(MetaClientError::Rejected { code: got, .. }) if got == code => {}
        other => panic!("{what}: expected {code:?}, got {other:?}"),
    }
}

fn issue(
    dir: &std::path::Path,
    ca: &ClusterCa,
    name: &str,
    role: Role,
    validity: Validity,
) -> ClusterTls {
    let issued = ca.issue_node(role, name, validity).expect("issue");
    write_issued(dir, name, &issued).expect("write");
    let paths = TlsPaths {
        // `dir` is a scratch folder inside the cluster's TLS folder, next to its CA.
        ca: dir.parent().expect("the TLS folder").join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    ClusterTls::load(&paths).expect("load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_endpoint_and_mutual_tls_between_nodes() {
    let tc = TestCluster::start(1).await;
    let root = tc.cluster.root().to_path_buf();
    let endpoint_url = tc.cluster.endpoint();
    let addr = endpoint_url.trim_start_matches("https://").to_owned();
    let ca = tc
        .cluster
        .https_ca()
        .expect("the endpoint serves HTTPS by default");

    phase("S3 over HTTPS works for a client that trusts the dev CA");
    assert!(endpoint_url.starts_with("https://"), "{endpoint_url}");
    tc.s3
        .create_bucket()
        .bucket("tls")
        .send()
        .await
        .expect("bucket over https");
    tc.s3
        .put_object()
        .bucket("tls")
        .key("k")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"over tls"))
        .send()
        .await
        .expect("put over https");

    phase("the endpoint speaks HTTP/1.1 over TLS, as S3 does, even to a client offering h2");
    let (_, alpn) = handshake(&addr, &ca).await.expect("handshake");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

    phase("a client that does not trust the CA, or speaks plain HTTP, gets nothing");
    let (ak, sk) = tc.cluster.credentials();
    let untrusting = crate::harness::s3_client(&endpoint_url, ak, sk, tc.cluster.region(), None);
    assert!(
        untrusting.list_buckets().send().await.is_err(),
        "a client with only the public roots trusted the dev CA"
    );
    let plain =
        crate::harness::s3_client(&format!("http://{addr}"), ak, sk, tc.cluster.region(), None);
    assert!(
        plain.list_buckets().send().await.is_err(),
        "plain HTTP was answered"
    );

    phase("a replaced certificate is served within seconds, without a restart");
    let before = served_certificate(&addr, &ca).await.expect("handshake");
    let https_ca = ClusterCa::from_pem(
        &std::fs::read_to_string(&ca).expect("ca.pem"),
        &std::fs::read_to_string(certs::tls_dir(&root).join("https-ca.key")).expect("key"),
    )
    .expect("https CA");
    let renewed = https_ca
        .issue_server(
            &["localhost".to_owned(), "127.0.0.1".to_owned()],
            "renewed",
            Validity::days_from_now(30),
        )
        .expect("renew");
    write_issued(&certs::tls_dir(&root), "s3", &renewed).expect("write renewed");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = served_certificate(&addr, &ca).await.expect("handshake");
        if now != before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let got = tc
        .s3
        .get_object()
        .bucket("tls")
        .key("k")
        .send()
        .await
        .expect("get after renewal");
    assert_eq!(
        got.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .as_ref(),
        b"over tls"
    );

    let tls_dir = certs::tls_dir(&root);
    let cluster_ca = ClusterCa::read(&tls_dir).expect("cluster CA");
    let scratch = tls_dir.join("test");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let gateway = tc
        .cluster
        .tls_of(NodeRole::Gateway, 1)
        .expect("gateway tls");
    let data_node = tc.cluster.tls_of(NodeRole::Data, 1).expect("data tls");
    let admin = tc.cluster.admin_tls().clone();
    let meta_addr = tc.cluster.layout().meta_endpoints()[0].clone();
    let data_addr = tc.data_nodes()[0].2.clone();

    phase("meta: a data node may not send object commands nor get data keys");
    let name = BucketName::parse("forged").expect("name");
    let forged = Bucket {
        name: name.clone(),
        created_ms: 0,
        versioning: VersioningState::Unversioned,
        owner: "forger".to_owned(),
        region: tc.cluster.region().to_owned(),
        encryption: None,
    };
    match meta_as(&tc, &data_node).create_bucket(&forged).await {
        Err(e) => assert!(format!("{e:?}").contains("PermissionDenied"), "{e:?}"),
        Ok(()) => panic!("a data node created a bucket"),
    }
    rejected_with(
        meta_as(&tc, &data_node).list_keks().await,
        Code::PermissionDenied,
        "data node listing KEKs",
    );
    assert!(
        meta_as(&tc, &admin)
            .get_bucket(&name)
            .await
            .expect("get")
            .is_none(),
        "the refused command created the bucket"
    );

    phase("raft: only meta nodes vote; a gateway's vote with a huge term changes nothing");
    let term_before = tc.meta().cluster_status().await.expect("status").term;
    let channel = endpoint(&meta_addr, Some(&gateway), Role::Meta)
        .expect("endpoint")
        .connect_lazy();
    let vote = RaftServiceClient::new(channel)
        .vote(raft_pb::VoteRequest {
            vote: Some(raft_pb::Vote {
                leader_id: Some(raft_pb::LeaderId {
                    term: term_before + 1000,
                    node_id: 99,
                }),
                committed: false,
            }),
            last_log_id: None,
        })
        .await
        .expect_err("a gateway voted");
    assert_eq!(vote.code(), Code::PermissionDenied, "{vote:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        tc.meta().cluster_status().await.expect("status").term,
        term_before
    );

    phase("data: another data node may not write a shard; nothing is stored");
    let id = ShardId::new(DataId::from_bytes([7; 16]), 0, Generation::from_random(7));
    let spec = ShardWriteSpec::new(id, Layout::new(3, 3).expect("layout"), 4096, 1);
    let as_data = DataClient::with_tls(Some(data_node.clone()));
    let refused = async {
        let mut writer = ShardWriter::open(&as_data, &data_addr, spec)?;
        writer.send_chunk(Bytes::from(vec![1_u8; 4096])).await?;
        writer.commit().await
    }
    .await;
    assert!(refused.is_err(), "a data node wrote a shard on another");
    let listed = tc
        .cluster
        .data_client()
        .list_shards(&data_addr)
        .await
        .expect("list");
    assert!(
        listed.iter().all(|s| s.id != id),
        "the refused shard was stored"
    );

    phase("no certificate, another CA's, an expired one: refused by meta and data alike");
    let foreign_ca = ClusterCa::generate("not ours", Validity::days_from_now(1)).expect("ca");
    let foreign_dir = scratch.join("foreign");
    std::fs::create_dir_all(&foreign_dir).expect("dir");
    foreign_ca.write(&foreign_dir).expect("write");
    let foreign_issued = foreign_ca
        .issue_node(Role::Gateway, "gateway", Validity::days_from_now(1))
        .expect("issue");
    write_issued(&foreign_dir, "gateway", &foreign_issued).expect("write");
    // Trusting the cluster CA (so the client accepts the server) but presenting the foreign
    // certificate: the server must refuse it.
    let foreign = ClusterTls::load(&TlsPaths {
        ca: tls_dir.join("ca.pem"),
        cert: foreign_dir.join("gateway.pem"),
        key: foreign_dir.join("gateway.key"),
    })
    .expect("foreign identity");
    let expired = issue(
        &scratch,
        &cluster_ca,
        "expired",
        Role::Gateway,
        Validity {
            not_before: SystemTime::now() - Duration::from_secs(10 * 86_400),
            lifetime: Duration::from_secs(86_400),
        },
    );
    for (what, who) in [("foreign CA", &foreign), ("expired", &expired)] {
        assert!(
            meta_as(&tc, who).cluster_status().await.is_err(),
            "meta answered a client with a certificate from {what}"
        );
        assert!(
            DataClient::with_tls(Some(who.clone()))
                .ping(&data_addr)
                .await
                .is_err(),
            "a data node answered a client with a certificate from {what}"
        );
    }
    let anonymous = Endpoint::from_shared(format!("https://{meta_addr}"))
        .expect("uri")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(
                    std::fs::read(tls_dir.join("ca.pem")).expect("ca"),
                ))
                .domain_name(Role::Meta.server_name()),
        )
        .expect("tls")
        .connect_lazy();
    assert!(
        MetaServiceClient::new(anonymous)
            .cluster_status(meta_pb::ClusterStatusRequest {})
            .await
            .is_err(),
        "meta answered a client without a certificate"
    );
    let plaintext = Endpoint::from_shared(format!("http://{meta_addr}"))
        .expect("uri")
        .connect_lazy();
    assert!(
        MetaServiceClient::new(plaintext)
            .cluster_status(meta_pb::ClusterStatusRequest {})
            .await
            .is_err(),
        "meta answered plaintext gRPC"
    );

    phase("the cluster still serves, and nothing refused left a trace");
    assert!(tc.meta().get_bucket(&name).await.expect("get").is_none());
    tc.s3
        .head_object()
        .bucket("tls")
        .key("k")
        .send()
        .await
        .expect("head");
}
