use super::*;

fn ca() -> ClusterCa {
    ClusterCa::generate("test cluster CA", Validity::days_from_now(1)).unwrap()
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

#[test]
fn a_node_certificate_names_exactly_its_role() {
    let ca = ca();
    for role in Role::ALL {
        let issued = ca
            .issue_node(role, &format!("{role}-1"), Validity::days_from_now(1))
            .unwrap();
        assert_eq!(role_of_cert(&der(&issued.cert_pem)), Ok(role));
        assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
    }
    assert!("root".parse::<Role>().is_err());
}

#[test]
fn certificates_naming_no_role_or_several_have_none() {
    let ca = ca();
    let v = Validity::days_from_now(1);
    let plain = ca
        .issue_with_names(&["localhost".into(), "127.0.0.1".into()], "x", v)
        .unwrap();
    assert_eq!(
        role_of_cert(&der(&plain.cert_pem)),
        Err(PeerRoleError::NoRole)
    );
    let two = ca
        .issue_with_names(
            &[
                Role::Data.server_name().into(),
                Role::Meta.server_name().into(),
            ],
            "x",
            v,
        )
        .unwrap();
    assert!(matches!(
        role_of_cert(&der(&two.cert_pem)),
        Err(PeerRoleError::SeveralRoles(_, _))
    ));
    let wildcard = ca
        .issue_with_names(&[format!("*.{ROLE_DOMAIN}")], "x", v)
        .unwrap();
    assert!(matches!(
        role_of_cert(&der(&wildcard.cert_pem)),
        Err(PeerRoleError::SeveralRoles(_, _))
    ));
    assert_eq!(
        role_of_cert(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
        Err(PeerRoleError::Malformed)
    );
}

#[test]
fn a_written_ca_is_read_back_and_issues_nodes_that_load() {
    let dir = tempfile::tempdir().unwrap();
    ca().write(dir.path()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = ClusterCa::read(dir.path()).unwrap();
    let issued = again
        .issue_node(Role::Gateway, "gateway", Validity::days_from_now(1))
        .unwrap();
    write_issued(dir.path(), "gateway", &issued).unwrap();
    let identity = NodeIdentity::load(&TlsPaths::in_dir(dir.path(), "gateway")).unwrap();
    assert_eq!(identity.role(), Role::Gateway);
    assert!(!format!("{identity:?}").contains("PRIVATE"));
}

#[test]
fn loading_refuses_missing_wrong_or_roleless_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    ca.write(dir.path()).unwrap();
    let paths = TlsPaths::in_dir(dir.path(), "node");
    assert!(matches!(
        NodeIdentity::load(&paths),
        Err(TlsError::Read { .. })
    ));
    let roleless = ca
        .issue_with_names(&["localhost".into()], "x", Validity::days_from_now(1))
        .unwrap();
    write_issued(dir.path(), "node", &roleless).unwrap();
    assert!(matches!(
        NodeIdentity::load(&paths),
        Err(TlsError::Role { .. })
    ));
    std::fs::write(&paths.key, "not a key").unwrap();
    assert!(matches!(
        NodeIdentity::load(&paths),
        Err(TlsError::NoPem { .. })
    ));
    assert!(matches!(
        TlsPaths::from_parts(Some("a".into()), None, None),
        Err(TlsError::Incomplete("certificate file"))
    ));
    assert_eq!(TlsPaths::from_parts(None, None, None).unwrap(), None);
}

#[test]
fn a_replaced_certificate_is_served_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let names = ["localhost".to_owned()];
    let first = ca
        .issue_server(&names, "first", Validity::days_from_now(1))
        .unwrap();
    write_issued(dir.path(), "s3", &first).unwrap();
    let cert = dir.path().join("s3.pem");
    let key = dir.path().join("s3.key");
    let reloading = ReloadingCert::load(&cert, &key).unwrap();
    assert_eq!(reloading.chain()[0], der(&first.cert_pem));
    assert!(!reloading.reload_if_changed().unwrap());

    let second = ca
        .issue_server(&names, "second", Validity::days_from_now(1))
        .unwrap();
    write_issued(dir.path(), "s3", &second).unwrap();
    assert!(reloading.reload_if_changed().unwrap());
    assert_eq!(reloading.chain()[0], der(&second.cert_pem));

    // A key that does not match the certificate: the previous pair stays in use.
    let third = ca
        .issue_server(&names, "third", Validity::days_from_now(1))
        .unwrap();
    std::fs::write(&key, third.key_pem.expose()).unwrap();
    assert!(reloading.reload_if_changed().is_err());
    assert_eq!(reloading.chain()[0], der(&second.cert_pem));
    std::fs::write(&cert, &third.cert_pem).unwrap();
    assert!(reloading.reload_if_changed().unwrap());
    assert_eq!(reloading.chain()[0], der(&third.cert_pem));
}
