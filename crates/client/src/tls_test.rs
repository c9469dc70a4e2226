//! The role policy, and mutual TLS end to end against a data service served as a data node
//! serves it: every kind of client that must be refused is, and a refused call changes nothing.

use super::*;
use crate::testing::data_node::DataModel;
use std::time::{Duration, SystemTime};
use tessera_proto::data::v1 as pb;
use tessera_proto::data::v1::data_service_client::DataServiceClient;
use tessera_runtime::tls::{ClusterCa, IssuedCert, NodeIdentity, TlsPaths, Validity, write_issued};
use tonic::transport::Channel;

#[test]
fn each_method_accepts_only_the_roles_that_need_it() {
    use Role::*;
    for role in Role::ALL {
        let raft = allowed("/tessera.raft.v1.RaftService/AppendEntries", role);
        assert_eq!(raft, role == Meta, "raft from {role}");
        assert_eq!(
            allowed("/tessera.raft.v1.RaftService/InstallSnapshot", role),
            role == Meta
        );
        assert_eq!(
            allowed("/tessera.meta.v1.MetaService/DecryptDataKey", role),
            matches!(role, Meta | Gateway),
            "data keys to {role}"
        );
        assert_eq!(
            allowed("/tessera.meta.v1.MetaService/RotateKek", role),
            matches!(role, Meta | Admin)
        );
        for method in ["CreateKmsKey", "ListKmsKeys", "UpdateKmsKey"] {
            assert_eq!(
                allowed(&format!("/tessera.meta.v1.MetaService/{method}"), role),
                matches!(role, Meta | Admin),
                "{method} from {role}"
            );
        }
        assert_eq!(
            allowed("/tessera.meta.v1.MetaService/DescribeKmsKey", role),
            matches!(role, Meta | Admin | Gateway),
            "DescribeKmsKey from {role}"
        );
        assert_eq!(
            allowed("/tessera.data.v1.DataService/WriteShard", role),
            matches!(role, Gateway | Repair),
            "shard writes from {role}"
        );
        assert_eq!(
            allowed("/tessera.data.v1.DataService/DeleteShard", role),
            matches!(role, Gateway | Repair)
        );
        assert_eq!(
            allowed("/tessera.meta.v1.MetaService/Heartbeat", role),
            matches!(role, Meta | Data)
        );
        // Unknown services and methods, and malformed paths, are nobody's.
        assert!(!allowed("/tessera.meta.v1.MetaService/Unknown", role));
        assert!(!allowed("/grpc.reflection.v1.ServerReflection/Info", role));
        assert!(!allowed("/", role));
        assert!(!allowed("", role));
    }
    // Every role has something to call; none reaches everything.
    for role in Role::ALL {
        assert!(allowed("/tessera.meta.v1.MetaService/ClusterStatus", role));
    }
}

/// A folder with a cluster CA and certificates made from it.
struct Pki {
    dir: tempfile::TempDir,
    ca: ClusterCa,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("test CA", Validity::days_from_now(1)).unwrap();
        ca.write(dir.path()).unwrap();
        Self { dir, ca }
    }

    fn save(&self, name: &str, issued: &IssuedCert) -> TlsPaths {
        write_issued(self.dir.path(), name, issued).unwrap();
        TlsPaths::in_dir(self.dir.path(), name)
    }

    fn node(&self, role: Role, name: &str) -> ClusterTls {
        let issued = self
            .ca
            .issue_node(role, name, Validity::days_from_now(1))
            .unwrap();
        ClusterTls::load(&self.save(name, &issued)).unwrap()
    }
}

async fn client(addr: &str, tls: Option<&ClusterTls>, peer: Role) -> DataServiceClient<Channel> {
    let channel = endpoint(addr, tls, peer)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    DataServiceClient::new(channel)
}

/// A client that trusts `pki`'s CA but presents no certificate.
fn anonymous(addr: &str, pki: &Pki) -> DataServiceClient<Channel> {
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.ca.cert_pem()))
        .domain_name(Role::Data.server_name());
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(config)
        .unwrap()
        .connect_lazy();
    DataServiceClient::new(channel)
}

fn write_request() -> impl tonic::IntoStreamingRequest<Message = pb::WriteShardRequest> {
    // A header that the service would accept from an allowed client would still need a
    // body; refused clients must be stopped before the service reads anything.
    tokio_stream::iter(vec![pb::WriteShardRequest { msg: None }])
}

async fn ping(client: &mut DataServiceClient<Channel>) -> Result<(), Status> {
    client.ping(pb::PingRequest {}).await.map(|_| ())
}

#[tokio::test]
async fn mutual_tls_refuses_every_client_that_is_not_allowed() {
    let pki = Pki::new();
    let node = DataModel::default();
    let addr = node.serve_tls(&pki.node(Role::Data, "data-1")).await;

    // Allowed: a gateway pings, and its calls reach the service.
    let gateway = pki.node(Role::Gateway, "gateway");
    let mut as_gateway = client(&addr, Some(&gateway), Role::Data).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = ping(&mut as_gateway).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway refused: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reached = as_gateway.write_shard(write_request()).await.unwrap_err();
    assert_eq!(
        reached.code(),
        Code::InvalidArgument,
        "the service itself answered"
    );

    // The wrong role: another data node may not read or write shards; an operator may look
    // but not delete.
    let mut as_data = client(&addr, Some(&pki.node(Role::Data, "data-2")), Role::Data).await;
    let refused = as_data.write_shard(write_request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(
        ping(&mut as_data).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let admin = pki.node(Role::Admin, "admin");
    let mut as_admin = client(&addr, Some(&admin), Role::Data).await;
    ping(&mut as_admin).await.expect("operators may ping");
    let delete = as_admin
        .delete_shard(pb::DeleteShardRequest::default())
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::PermissionDenied, "{delete:?}");

    // A certificate from the cluster CA that names no role, or several.
    for (name, names) in [
        ("roleless", vec!["localhost".to_owned()]),
        (
            "two-roles",
            vec![
                Role::Gateway.server_name().to_owned(),
                Role::Meta.server_name().to_owned(),
            ],
        ),
    ] {
        let issued = pki
            .ca
            .issue_with_names(&names, name, Validity::days_from_now(1))
            .unwrap();
        let paths = pki.save(name, &issued);
        // It cannot even be loaded as a node's identity...
        assert!(NodeIdentity::load(&paths).is_err());
        // ...and a client that presents it anyway is refused by the server.
        let identity = tonic::transport::Identity::from_pem(
            issued.cert_pem.as_bytes(),
            issued.key_pem.expose().as_bytes(),
        );
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pki.ca.cert_pem()))
            .identity(identity)
            .domain_name(Role::Data.server_name());
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(config)
            .unwrap()
            .connect_lazy();
        let err = ping(&mut DataServiceClient::new(channel))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{name}: {err:?}");
    }

    // No certificate at all, a gateway certificate from another CA, an expired one: the
    // handshake fails and no call reaches the service.
    let err = ping(&mut anonymous(&addr, &pki)).await.unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    let other = Pki::new();
    let foreign = other.node(Role::Gateway, "gateway");
    let mut as_foreign = client(&addr, Some(&foreign), Role::Data).await;
    assert!(
        ping(&mut as_foreign).await.is_err(),
        "a foreign CA was accepted"
    );
    let expired = pki
        .ca
        .issue_node(
            Role::Gateway,
            "expired",
            Validity {
                not_before: SystemTime::now() - Duration::from_secs(10 * 86_400),
                lifetime: Duration::from_secs(86_400),
            },
        )
        .unwrap();
    let expired = ClusterTls::load(&pki.save("expired", &expired)).unwrap();
    let mut as_expired = client(&addr, Some(&expired), Role::Data).await;
    assert!(
        ping(&mut as_expired).await.is_err(),
        "an expired certificate was accepted"
    );
    let err = as_expired.write_shard(write_request()).await.unwrap_err();
    assert_ne!(err.code(), Code::InvalidArgument, "the service was reached");

    // Plain HTTP/2 without TLS is not answered.
    let mut plain = client(&addr, None, Role::Data).await;
    assert!(ping(&mut plain).await.is_err(), "plaintext was answered");

    // A client checks the server's role too: a gateway that means to reach a meta node does
    // not talk to a data node's certificate.
    let mut wrong_server = client(&addr, Some(&gateway), Role::Meta).await;
    assert!(
        ping(&mut wrong_server).await.is_err(),
        "a data node's certificate was taken for a meta node's"
    );

    // Nothing that was refused changed the node.
    assert!(node.lock().shards.is_empty());
}
