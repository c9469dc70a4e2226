//! `tessera admin ca`: makes the cluster CA and issues the certificates of mutual TLS between
//! nodes (one per node, naming its role) and the S3 endpoint's HTTPS certificate. Keys are
//! written 0600 and never printed.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::path::PathBuf;
use tessera_runtime::tls::{ClusterCa, Role, Validity, write_issued};

/// `tessera admin ca …`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Makes a new cluster CA in DIR (ca.pem to give every node, ca.key to keep safe).
    Init {
        /// Folder for ca.pem and ca.key (made if missing; an existing CA is never replaced).
        #[arg(long)]
        dir: PathBuf,
        /// Days the CA is valid.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Issues a node certificate for ROLE (meta, data, gateway, repair or admin), written as
    /// NAME.pem and NAME.key next to the CA (or in --out).
    Issue {
        /// The CA's folder.
        #[arg(long)]
        dir: PathBuf,
        /// The role the certificate grants.
        #[arg(long)]
        role: String,
        /// The node's name (the certificate's common name and the files' name).
        #[arg(long)]
        name: String,
        /// Folder for the two files (default: the CA's folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 397)]
        days: u64,
    },
    /// Issues an HTTPS certificate for the S3 endpoint, for each --host (DNS name or IP).
    Server {
        /// The CA's folder.
        #[arg(long)]
        dir: PathBuf,
        /// The files' name (NAME.pem, NAME.key).
        #[arg(long, default_value = "s3")]
        name: String,
        /// A name clients reach the endpoint by (repeat the flag).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Folder for the two files (default: the CA's folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 397)]
        days: u64,
    },
}

/// Runs a CA command.
pub fn run(command: CaCommand) -> Result<()> {
    match command {
        CaCommand::Init { dir, days } => {
            if dir.join("ca.key").exists() || dir.join("ca.pem").exists() {
                bail!(
                    "{} already holds a CA; it is never replaced (move it away first)",
                    dir.display()
                );
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let ca = ClusterCa::generate("Tessera cluster CA", Validity::days_from_now(days))?;
            ca.write(&dir)?;
            println!("{}", dir.join("ca.pem").display());
            Ok(())
        }
        CaCommand::Issue {
            dir,
            role,
            name,
            out,
            days,
        } => {
            let role: Role = role.parse()?;
            let ca = ClusterCa::read(&dir)?;
            let issued = ca.issue_node(role, &name, Validity::days_from_now(days))?;
            write_out(out.unwrap_or(dir), &name, &issued)
        }
        CaCommand::Server {
            dir,
            name,
            hosts,
            out,
            days,
        } => {
            let ca = ClusterCa::read(&dir)?;
            let issued = ca.issue_server(&hosts, &hosts[0], Validity::days_from_now(days))?;
            write_out(out.unwrap_or(dir), &name, &issued)
        }
    }
}

fn write_out(out: PathBuf, name: &str, issued: &tessera_runtime::tls::IssuedCert) -> Result<()> {
    if name.is_empty() || name.contains('/') || name == "ca" {
        bail!("{name:?} cannot name certificate files");
    }
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    write_issued(&out, name, issued)?;
    println!("{}", out.join(format!("{name}.pem")).display());
    println!("{}", out.join(format!("{name}.key")).display());
    Ok(())
}
