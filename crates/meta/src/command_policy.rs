//! Which role may send which meta command, once mutual TLS has told the meta service who the
//! client is. Each role may send only what its work needs; key-encryption-key commands come
//! from meta nodes' own proposals only, never over the wire.

use tessera_proto::meta::v1 as pb;
use tessera_runtime::tls::Role;

/// Whether a client of `role` may send `cmd`: each role only the commands its work needs (a
/// data node registers itself; only the repair daemon moves shards; only gateways and
/// operators change buckets and objects). Meta nodes forward any command to their leader.
pub(crate) fn command_allowed(role: Role, cmd: &pb::command::Cmd) -> bool {
    use pb::command::Cmd;
    use tessera_runtime::tls::Role::{Admin, Data, Gateway, Meta, Repair};
    match cmd {
        // Made by a meta node's own RPCs (CreateKmsKey, UpdateKmsKey), never sent by a client:
        // a key's material is wrapped under the root key only meta nodes hold.
        Cmd::CreateKek(_) | Cmd::RewrapKeys(_) | Cmd::CreateKmsKey(_) | Cmd::UpdateKmsKey(_) => {
            false
        }
        Cmd::CreateBucket(_)
        | Cmd::DeleteBucket(_)
        | Cmd::SetBucketVersioning(_)
        | Cmd::SetBucketEncryption(_)
        | Cmd::PutVersion(_)
        | Cmd::DeleteObject(_)
        | Cmd::CreateUpload(_)
        | Cmd::PutPart(_)
        | Cmd::CompleteUpload(_)
        | Cmd::AbortUpload(_) => matches!(role, Meta | Gateway | Admin),
        Cmd::RegisterDataNode(_) => matches!(role, Meta | Data),
        Cmd::SetDataNodeState(_) => matches!(role, Meta | Admin),
        Cmd::UpdatePlacement(_)
        | Cmd::ClaimShards(_)
        | Cmd::ReleaseShards(_)
        | Cmd::PutRepairReport(_) => matches!(role, Meta | Repair),
        Cmd::GrantLease(_) | Cmd::RenewLease(_) | Cmd::ReleaseLease(_) => {
            matches!(role, Meta | Gateway | Repair | Admin)
        }
    }
}

/// The command's name, for errors.
pub(crate) fn command_name(cmd: &pb::command::Cmd) -> &'static str {
    use pb::command::Cmd;
    match cmd {
        Cmd::CreateBucket(_) => "CreateBucket",
        Cmd::DeleteBucket(_) => "DeleteBucket",
        Cmd::PutVersion(_) => "PutVersion",
        Cmd::DeleteObject(_) => "DeleteObject",
        Cmd::CreateUpload(_) => "CreateUpload",
        Cmd::PutPart(_) => "PutPart",
        Cmd::CompleteUpload(_) => "CompleteUpload",
        Cmd::AbortUpload(_) => "AbortUpload",
        Cmd::RegisterDataNode(_) => "RegisterDataNode",
        Cmd::SetBucketVersioning(_) => "SetBucketVersioning",
        Cmd::SetDataNodeState(_) => "SetDataNodeState",
        Cmd::UpdatePlacement(_) => "UpdatePlacement",
        Cmd::ClaimShards(_) => "ClaimShards",
        Cmd::ReleaseShards(_) => "ReleaseShards",
        Cmd::PutRepairReport(_) => "PutRepairReport",
        Cmd::GrantLease(_) => "GrantLease",
        Cmd::RenewLease(_) => "RenewLease",
        Cmd::ReleaseLease(_) => "ReleaseLease",
        Cmd::CreateKek(_) => "CreateKek",
        Cmd::RewrapKeys(_) => "RewrapKeys",
        Cmd::CreateKmsKey(_) => "CreateKmsKey",
        Cmd::UpdateKmsKey(_) => "UpdateKmsKey",
        Cmd::SetBucketEncryption(_) => "SetBucketEncryption",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::command::Cmd;

    fn every_command() -> Vec<Cmd> {
        vec![
            Cmd::CreateBucket(Default::default()),
            Cmd::DeleteBucket(Default::default()),
            Cmd::PutVersion(Default::default()),
            Cmd::DeleteObject(Default::default()),
            Cmd::CreateUpload(Default::default()),
            Cmd::PutPart(Default::default()),
            Cmd::CompleteUpload(Default::default()),
            Cmd::AbortUpload(Default::default()),
            Cmd::RegisterDataNode(Default::default()),
            Cmd::SetBucketVersioning(Default::default()),
            Cmd::SetDataNodeState(Default::default()),
            Cmd::UpdatePlacement(Default::default()),
            Cmd::ClaimShards(Default::default()),
            Cmd::ReleaseShards(Default::default()),
            Cmd::PutRepairReport(Default::default()),
            Cmd::GrantLease(Default::default()),
            Cmd::RenewLease(Default::default()),
            Cmd::ReleaseLease(Default::default()),
            Cmd::CreateKek(Default::default()),
            Cmd::RewrapKeys(Default::default()),
            Cmd::CreateKmsKey(Default::default()),
            Cmd::UpdateKmsKey(Default::default()),
            Cmd::SetBucketEncryption(Default::default()),
        ]
    }

    fn allowed_names(role: Role) -> Vec<&'static str> {
        every_command()
            .iter()
            .filter(|c| command_allowed(role, c))
            .map(command_name)
            .collect()
    }

    #[test]
    fn a_data_node_may_only_register_itself() {
        assert_eq!(allowed_names(Role::Data), ["RegisterDataNode"]);
    }

    #[test]
    fn only_repair_moves_shards_and_only_gateways_and_operators_change_objects() {
        assert_eq!(
            allowed_names(Role::Repair),
            [
                "UpdatePlacement",
                "ClaimShards",
                "ReleaseShards",
                "PutRepairReport",
                "GrantLease",
                "RenewLease",
                "ReleaseLease"
            ]
        );
        for role in [Role::Gateway, Role::Admin] {
            let names = allowed_names(role);
            for object_command in [
                "CreateBucket",
                "PutVersion",
                "DeleteObject",
                "CompleteUpload",
            ] {
                assert!(names.contains(&object_command), "{role} {object_command}");
            }
            assert!(!names.contains(&"ClaimShards"), "{role}");
            assert!(!names.contains(&"RegisterDataNode"), "{role}");
        }
        assert!(allowed_names(Role::Admin).contains(&"SetDataNodeState"));
        assert!(!allowed_names(Role::Gateway).contains(&"SetDataNodeState"));
    }

    #[test]
    fn nobody_sends_key_encryption_key_commands() {
        let meta_made = ["CreateKek", "RewrapKeys", "CreateKmsKey", "UpdateKmsKey"];
        for role in Role::ALL {
            let names = allowed_names(role);
            for made in meta_made {
                assert!(!names.contains(&made), "{role} {made}");
            }
        }
        // Meta nodes forward everything else to their leader.
        assert_eq!(
            allowed_names(Role::Meta).len(),
            every_command().len() - meta_made.len()
        );
        // Bucket default encryption is set like versioning, by gateways and operators.
        for role in [Role::Gateway, Role::Admin] {
            assert!(
                allowed_names(role).contains(&"SetBucketEncryption"),
                "{role}"
            );
        }
        assert!(!allowed_names(Role::Repair).contains(&"SetBucketEncryption"));
    }
}
