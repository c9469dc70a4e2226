//! `tessera admin kms …-key`: the built-in KMS's customer keys. A key is named by its id, its
//! alias (`NAME` or `alias/NAME`) or an ARN; `create-key` prints the new key's id alone, so a
//! script can capture it. A refusal prints the KMS reason meta gave and exits non-zero.

use anyhow::{Result, anyhow};
use clap::Subcommand;
use tessera_client::{MetaClient, MetaClientError};
use tessera_proto::meta::v1 as pb;
use tessera_runtime::clock::now_ms;

/// The KMS key commands of `tessera admin kms`.
#[derive(Debug, Subcommand)]
pub(crate) enum KmsKeyCommand {
    /// Creates a KMS key (enabled) for SSE-KMS; prints its id.
    CreateKey {
        /// The key's alias (`NAME` or `alias/NAME`; not under `aws/`).
        #[arg(long)]
        alias: String,
        /// What the key is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Every KMS key: id, alias, state, creation and deletion dates.
    ListKeys,
    /// One KMS key (by id, alias or ARN).
    DescribeKey {
        /// Key id, alias, alias/NAME or ARN.
        key: String,
    },
    /// Makes a disabled key usable again.
    EnableKey {
        /// Key id, alias, alias/NAME or ARN.
        key: String,
    },
    /// Makes a key unusable: its objects cannot be read or written until it is enabled.
    DisableKey {
        /// Key id, alias, alias/NAME or ARN.
        key: String,
    },
    /// Deletes a key after a waiting period (its objects become unreadable for good); prints
    /// the deletion date.
    ScheduleKeyDeletion {
        /// Key id, alias, alias/NAME or ARN.
        key: String,
        /// Days before the key is deleted (7 to 30; default 30).
        #[arg(long)]
        pending_window_days: Option<u32>,
    },
    /// Keeps a key pending deletion; it stays disabled.
    CancelKeyDeletion {
        /// Key id, alias, alias/NAME or ARN.
        key: String,
    },
}

/// A refusal as the operator should read it: the reason meta gave (`KMS.…: …`).
fn refusal(e: MetaClientError) -> anyhow::Error {
    match e {
        MetaClientError::Rejected { message, .. } => anyhow!(message),
        other => anyhow!(other),
    }
}

/// Runs one KMS key command.
pub(crate) async fn run(meta: &MetaClient, command: KmsKeyCommand) -> Result<()> {
    use pb::KmsKeyAction as A;
    let (key, action, days) = match command {
        KmsKeyCommand::CreateKey { alias, description } => {
            let alias = alias.strip_prefix("alias/").unwrap_or(&alias);
            let made = meta
                .create_kms_key(alias, &description)
                .await
                .map_err(refusal)?;
            let key = made.key.ok_or_else(|| anyhow!("meta answered no key"))?;
            println!("{}", key.key_id);
            return Ok(());
        }
        KmsKeyCommand::ListKeys => {
            let keys = meta.list_kms_keys().await.map_err(refusal)?;
            print!("{}", keys_table(&keys, now_ms()));
            return Ok(());
        }
        KmsKeyCommand::DescribeKey { key } => {
            let found = meta.describe_kms_key(&key, false).await.map_err(refusal)?;
            let record = found.key.ok_or_else(|| anyhow!("meta answered no key"))?;
            print!("{}", describe(&record, found.now_ms));
            return Ok(());
        }
        KmsKeyCommand::EnableKey { key } => (key, A::Enable, 0),
        KmsKeyCommand::DisableKey { key } => (key, A::Disable, 0),
        KmsKeyCommand::ScheduleKeyDeletion {
            key,
            pending_window_days,
        } => (key, A::ScheduleDeletion, pending_window_days.unwrap_or(0)),
        KmsKeyCommand::CancelKeyDeletion { key } => (key, A::CancelDeletion, 0),
    };
    let updated = meta
        .update_kms_key(&key, action, days)
        .await
        .map_err(refusal)?;
    let record = updated.key.ok_or_else(|| anyhow!("meta answered no key"))?;
    if action == A::ScheduleDeletion {
        println!("{}", utc_date(record.deletion_ms));
    } else {
        println!("{} {}", record.key_id, state_name(&record, updated.now_ms));
    }
    Ok(())
}

/// A key's state as KMS names it; a key pending deletion past its date is "Deleted".
fn state_name(record: &pb::KmsKeyRecord, now_ms: i64) -> &'static str {
    match pb::KmsKeyState::try_from(record.state) {
        Ok(pb::KmsKeyState::KmsKeyEnabled) => "Enabled",
        Ok(pb::KmsKeyState::KmsKeyDisabled) => "Disabled",
        Ok(pb::KmsKeyState::KmsKeyPendingDeletion) if now_ms >= record.deletion_ms => "Deleted",
        Ok(pb::KmsKeyState::KmsKeyPendingDeletion) => "PendingDeletion",
        Ok(pb::KmsKeyState::Unspecified) | Err(_) => "Unknown",
    }
}

/// The `list-keys` table.
fn keys_table(keys: &[pb::KmsKeyRecord], now_ms: i64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<36}  {:<24} {:<16} {:<20}  DELETION",
        "KEY ID", "ALIAS", "STATE", "CREATED"
    );
    for k in keys {
        let alias = if k.alias.is_empty() { "-" } else { &k.alias };
        let deletion = if k.deletion_ms > 0 {
            utc_date(k.deletion_ms)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<36}  {:<24} {:<16} {:<20}  {deletion}",
            k.key_id,
            alias,
            state_name(k, now_ms),
            utc_date(k.created_ms)
        );
    }
    out
}

/// The `describe-key` answer: one field a line.
fn describe(k: &pb::KmsKeyRecord, now_ms: i64) -> String {
    let mut out = format!(
        "KeyId:        {}\nAlias:        {}\nDescription:  {}\nState:        {}\nCreated:      {}\n",
        k.key_id,
        if k.alias.is_empty() {
            "-".to_owned()
        } else {
            format!("alias/{}", k.alias)
        },
        k.description,
        state_name(k, now_ms),
        utc_date(k.created_ms),
    );
    if k.deletion_ms > 0 {
        out.push_str(&format!("DeletionDate: {}\n", utc_date(k.deletion_ms)));
    }
    out
}

/// `ms` since the epoch as an ISO 8601 UTC time, to the second.
fn utc_date(ms: i64) -> String {
    use aws_smithy_types::date_time::{DateTime, Format};
    DateTime::from_secs(ms.div_euclid(1000))
        .fmt(Format::DateTime)
        .unwrap_or_else(|_| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_iso_8601() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_date(1_735_689_599_999), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn a_key_past_its_deletion_date_reads_deleted() {
        let pending = pb::KmsKeyRecord {
            key_id: "k".into(),
            state: pb::KmsKeyState::KmsKeyPendingDeletion as i32,
            deletion_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(state_name(&pending, 999), "PendingDeletion");
        assert_eq!(state_name(&pending, 1_000), "Deleted");
        let table = keys_table(&[pending], 0);
        assert!(table.contains("1970-01-01T00:00:01Z"), "{table}");
        assert!(describe(&pb::KmsKeyRecord::default(), 0).contains("Alias:        -"));
    }
}
