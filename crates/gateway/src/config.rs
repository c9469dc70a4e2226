//! The gateway's typed config. Credentials are secrets: they never appear in `Debug` output,
//! and the placeholders of the deploy templates are refused, so a gateway never serves with
//! credentials anyone can read in the repository.

use serde::Deserialize;
use std::net::SocketAddr;
use tessera_runtime::Secret;
use tessera_runtime::config::ConfigError;

/// Everything `tessera gateway` needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the S3 endpoint listens.
    pub listen: SocketAddr,
    /// Meta nodes to reach (host:port).
    pub meta_endpoints: Vec<String>,
    /// The region this endpoint serves; SigV4 scopes and LocationConstraint must name it.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key of the root user.
    pub root_access_key: String,
    /// Secret key of the root user.
    pub root_secret_key: Secret<String>,
    /// Bodies up to this size are stored inline in metadata instead of as shards.
    #[serde(default = "default_inline_threshold")]
    pub inline_threshold: u64,
    /// Bytes per shard chunk.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: u32,
    /// Seconds a client may stay silent while sending a body before the request fails.
    #[serde(default = "default_body_idle_secs")]
    pub body_idle_timeout_secs: u64,
    /// Seconds a client has to send a request's headers before the connection is closed.
    #[serde(default = "default_header_read_secs")]
    pub header_read_timeout_secs: u64,
    /// The largest chunk an aws-chunked upload may declare (s3s buffers a whole chunk before
    /// checking its signature).
    #[serde(default = "default_max_aws_chunk_size")]
    pub max_aws_chunk_size: u64,
    /// Connection limits of the HTTP server.
    #[serde(default)]
    pub http: HttpLimits,
    /// Where Prometheus scrapes `/metrics` (its own listener); none when unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// HTTPS for the S3 endpoint (`[https]`); without it the endpoint speaks plain HTTP
    /// (behind a proxy that terminates TLS, or for tools that cannot take a CA).
    #[serde(default)]
    pub https: Option<HttpsConfig>,
    /// Mutual TLS with meta and data nodes (`[tls]`): the cluster CA, this gateway's
    /// `gateway` certificate and key. The `tessera gateway` command requires it.
    #[serde(default)]
    pub tls: tessera_runtime::tls::TlsConfig,
    /// Take SSE-C requests over plain HTTP. S3 refuses them (the customer's key would travel
    /// in clear), and so does Tessera by default; set it only for local testing, as Ceph's
    /// `rgw_crypt_require_ssl = false` does.
    #[serde(default)]
    pub sse_c_over_http: bool,
}

/// The S3 endpoint's certificate (`[https]`): read again within seconds when either file
/// changes, so it is renewed without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    /// The certificate chain (PEM), the server's certificate first.
    pub cert: std::path::PathBuf,
    /// Its private key (PEM).
    pub key: std::path::PathBuf,
}

/// Limits on the HTTP connections of the S3 endpoint (`[http]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Seconds an HTTP/1 connection may wait for its next request before it is closed
    /// (hyper also closes it when `header_read_timeout_secs` passes first).
    pub http1_keep_alive_idle_secs: u64,
    /// Seconds between HTTP/2 keep-alive pings; 0 sends none.
    pub http2_keep_alive_interval_secs: u64,
    /// Seconds to wait for a ping's answer before the HTTP/2 connection is closed.
    pub http2_keep_alive_timeout_secs: u64,
    /// Seconds an HTTP/2 connection without open requests stays open.
    pub http2_idle_timeout_secs: u64,
    /// Requests in flight at once on one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// Client connections open at once; keep it below the process's open-file limit.
    pub max_connections: usize,
    /// Milliseconds a connection over the limit waits for a free slot before it is answered
    /// 503 SlowDown and closed.
    pub connection_queue_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            http1_keep_alive_idle_secs: 30,
            http2_keep_alive_interval_secs: 20,
            http2_keep_alive_timeout_secs: 10,
            http2_idle_timeout_secs: 60,
            http2_max_concurrent_streams: 100,
            max_connections: 512,
            connection_queue_ms: 200,
        }
    }
}

impl HttpLimits {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str| Err(ConfigError::Invalid(what.to_string()));
        if self.http1_keep_alive_idle_secs == 0 || self.http2_idle_timeout_secs == 0 {
            return invalid("http idle timeouts must be at least 1 second");
        }
        if self.http2_keep_alive_interval_secs > 0 && self.http2_keep_alive_timeout_secs == 0 {
            return invalid("http2_keep_alive_timeout_secs must be at least 1 second");
        }
        if self.http2_max_concurrent_streams == 0 {
            return invalid("http2_max_concurrent_streams must be at least 1");
        }
        if self.max_connections == 0 {
            return invalid("max_connections must be at least 1");
        }
        if self.connection_queue_ms > 60_000 {
            return invalid("connection_queue_ms must be at most 60000");
        }
        Ok(())
    }
}

/// The environment variables that override the config file, with the setting each sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("TESSERA_MAX_AWS_CHUNK_SIZE", "max_aws_chunk_size"),
    (
        "TESSERA_HTTP1_KEEP_ALIVE_IDLE_SECS",
        "http.http1_keep_alive_idle_secs",
    ),
    (
        "TESSERA_HTTP2_KEEP_ALIVE_INTERVAL_SECS",
        "http.http2_keep_alive_interval_secs",
    ),
    (
        "TESSERA_HTTP2_KEEP_ALIVE_TIMEOUT_SECS",
        "http.http2_keep_alive_timeout_secs",
    ),
    (
        "TESSERA_HTTP2_IDLE_TIMEOUT_SECS",
        "http.http2_idle_timeout_secs",
    ),
    (
        "TESSERA_HTTP2_MAX_CONCURRENT_STREAMS",
        "http.http2_max_concurrent_streams",
    ),
    ("TESSERA_MAX_CONNECTIONS", "http.max_connections"),
    ("TESSERA_CONNECTION_QUEUE_MS", "http.connection_queue_ms"),
    ("TESSERA_GATEWAY_METRICS_LISTEN", "metrics_listen"),
];

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_inline_threshold() -> u64 {
    16 * 1024
}

fn default_chunk_size() -> u32 {
    tessera_core::stripe::DEFAULT_CHUNK_SIZE
}

fn default_body_idle_secs() -> u64 {
    60
}

fn default_header_read_secs() -> u64 {
    30
}

fn default_max_aws_chunk_size() -> u64 {
    16 * 1024 * 1024
}

/// The marker of the deploy templates' placeholder credentials.
const PLACEHOLDER: &str = "change-me";

fn parse_env<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| {
        let what = if name.ends_with("_LISTEN") {
            "an address"
        } else {
            "a valid number"
        };
        ConfigError::Invalid(format!("{name}={value:?} is not {what}"))
    })
}

impl GatewayConfig {
    /// A config with defaults for everything but the required fields.
    pub fn new(
        listen: SocketAddr,
        meta_endpoints: Vec<String>,
        root_access_key: String,
        root_secret_key: Secret<String>,
    ) -> Self {
        Self {
            listen,
            meta_endpoints,
            region: default_region(),
            root_access_key,
            root_secret_key,
            inline_threshold: default_inline_threshold(),
            chunk_size: default_chunk_size(),
            body_idle_timeout_secs: default_body_idle_secs(),
            header_read_timeout_secs: default_header_read_secs(),
            max_aws_chunk_size: default_max_aws_chunk_size(),
            http: HttpLimits::default(),
            metrics_listen: None,
            https: None,
            tls: Default::default(),
            sse_c_over_http: false,
        }
    }

    /// Applies the `TESSERA_*` variables of [`ENV_OVERRIDES`] that `lookup` finds (the process
    /// environment in `run`); they win over the file.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (name, _) in ENV_OVERRIDES {
            let Some(value) = lookup(name) else { continue };
            let http = &mut self.http;
            match *name {
                "TESSERA_MAX_AWS_CHUNK_SIZE" => self.max_aws_chunk_size = parse_env(name, &value)?,
                "TESSERA_HTTP1_KEEP_ALIVE_IDLE_SECS" => {
                    http.http1_keep_alive_idle_secs = parse_env(name, &value)?;
                }
                "TESSERA_HTTP2_KEEP_ALIVE_INTERVAL_SECS" => {
                    http.http2_keep_alive_interval_secs = parse_env(name, &value)?;
                }
                "TESSERA_HTTP2_KEEP_ALIVE_TIMEOUT_SECS" => {
                    http.http2_keep_alive_timeout_secs = parse_env(name, &value)?;
                }
                "TESSERA_HTTP2_IDLE_TIMEOUT_SECS" => {
                    http.http2_idle_timeout_secs = parse_env(name, &value)?;
                }
                "TESSERA_HTTP2_MAX_CONCURRENT_STREAMS" => {
                    http.http2_max_concurrent_streams = parse_env(name, &value)?;
                }
                "TESSERA_MAX_CONNECTIONS" => http.max_connections = parse_env(name, &value)?,
                "TESSERA_CONNECTION_QUEUE_MS" => {
                    http.connection_queue_ms = parse_env(name, &value)?;
                }
                "TESSERA_GATEWAY_METRICS_LISTEN" => {
                    self.metrics_listen = Some(parse_env(name, &value)?);
                }
                _ => unreachable!("every listed variable is handled"),
            }
        }
        Ok(())
    }

    /// Checks the rules that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.meta_endpoints.is_empty() {
            return Err(ConfigError::Invalid(
                "gateway needs at least one meta endpoint".into(),
            ));
        }
        if self.root_access_key.len() < 3 || self.root_secret_key.expose().len() < 8 {
            return Err(ConfigError::Invalid(
                "root access key needs >= 3 characters and secret key >= 8".into(),
            ));
        }
        let placeholder = |s: &str| s.to_ascii_lowercase().contains(PLACEHOLDER);
        if placeholder(&self.root_access_key) || placeholder(self.root_secret_key.expose()) {
            return Err(ConfigError::Invalid(
                "root_access_key / root_secret_key still hold the template's CHANGE-ME placeholder: \
                 set real credentials in the config file, or set TESSERA_ROOT_ACCESS_KEY and \
                 TESSERA_ROOT_SECRET_KEY in the environment"
                    .into(),
            ));
        }
        if self.inline_threshold > 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "inline_threshold must be <= 1 MiB".into(),
            ));
        }
        if !(4096..=4 * 1024 * 1024).contains(&self.chunk_size) {
            return Err(ConfigError::Invalid(
                "chunk_size must be within 4 KiB..=4 MiB".into(),
            ));
        }
        if self.body_idle_timeout_secs == 0 || self.header_read_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "timeouts must be at least 1 second".into(),
            ));
        }
        if self.region.is_empty() {
            return Err(ConfigError::Invalid("region must not be empty".into()));
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.max_aws_chunk_size) {
            return Err(ConfigError::Invalid(
                "max_aws_chunk_size must be within 64 KiB..=1 GiB".into(),
            ));
        }
        self.http.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(access: &str, secret: &str) -> GatewayConfig {
        GatewayConfig::new(
            "127.0.0.1:9000".parse().expect("addr"),
            vec!["meta:7001".into()],
            access.into(),
            Secret::new(secret.into()),
        )
    }

    fn invalid(c: &GatewayConfig) -> String {
        match c.validate() {
            Err(ConfigError::Invalid(why)) => why,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn template_placeholder_credentials_are_refused() {
        for (access, secret) in [
            ("CHANGE-ME-ACCESS-KEY", "a-real-secret-key"),
            ("AKREAL", "CHANGE-ME-SECRET-KEY-AT-LEAST-8"),
            ("AKREAL", "prefix-change-me-suffix"),
            ("my-Change-Me", "a-real-secret-key"),
        ] {
            let why = invalid(&config(access, secret));
            assert!(why.contains("CHANGE-ME placeholder"), "{why}");
            assert!(why.contains("TESSERA_ROOT_SECRET_KEY"), "{why}");
            assert!(
                !why.contains(secret),
                "the message must not echo the secret"
            );
        }
        assert!(config("AKREAL", "a-real-secret-key").validate().is_ok());
    }

    #[test]
    fn http_limits_have_defaults_and_rules() {
        let c = config("AKREAL", "a-real-secret-key");
        assert_eq!(c.http, HttpLimits::default());
        assert_eq!(c.max_aws_chunk_size, 16 * 1024 * 1024);
        let mut zero = c.clone();
        zero.http.max_connections = 0;
        assert_eq!(invalid(&zero), "max_connections must be at least 1");
        let mut zero = c.clone();
        zero.http.http2_max_concurrent_streams = 0;
        assert_eq!(
            invalid(&zero),
            "http2_max_concurrent_streams must be at least 1"
        );
        let mut zero = c.clone();
        zero.http.http1_keep_alive_idle_secs = 0;
        assert_eq!(
            invalid(&zero),
            "http idle timeouts must be at least 1 second"
        );
        let mut tiny = c;
        tiny.max_aws_chunk_size = 1024;
        assert_eq!(
            invalid(&tiny),
            "max_aws_chunk_size must be within 64 KiB..=1 GiB"
        );
    }

    #[test]
    fn environment_variables_override_the_file() {
        let mut c = config("AKREAL", "a-real-secret-key");
        let env: std::collections::HashMap<&str, &str> = [
            ("TESSERA_MAX_CONNECTIONS", "7"),
            ("TESSERA_HTTP2_MAX_CONCURRENT_STREAMS", "3"),
            ("TESSERA_HTTP1_KEEP_ALIVE_IDLE_SECS", "2"),
            ("TESSERA_HTTP2_IDLE_TIMEOUT_SECS", "4"),
            ("TESSERA_HTTP2_KEEP_ALIVE_INTERVAL_SECS", "0"),
            ("TESSERA_HTTP2_KEEP_ALIVE_TIMEOUT_SECS", "5"),
            ("TESSERA_CONNECTION_QUEUE_MS", "50"),
            ("TESSERA_MAX_AWS_CHUNK_SIZE", "1048576"),
            ("TESSERA_GATEWAY_METRICS_LISTEN", "127.0.0.1:9464"),
        ]
        .into_iter()
        .collect();
        c.apply_env(|k| env.get(k).map(|v| (*v).to_string()))
            .expect("apply");
        assert_eq!(
            c.http,
            HttpLimits {
                http1_keep_alive_idle_secs: 2,
                http2_keep_alive_interval_secs: 0,
                http2_keep_alive_timeout_secs: 5,
                http2_idle_timeout_secs: 4,
                http2_max_concurrent_streams: 3,
                max_connections: 7,
                connection_queue_ms: 50,
            }
        );
        assert_eq!(c.max_aws_chunk_size, 1 << 20);
        assert_eq!(c.metrics_listen, "127.0.0.1:9464".parse().ok());
        let err = c
            .apply_env(|k| (k == "TESSERA_GATEWAY_METRICS_LISTEN").then(|| "nowhere".to_string()))
            .expect_err("not an address");
        assert!(
            matches!(&err, ConfigError::Invalid(why) if why == "TESSERA_GATEWAY_METRICS_LISTEN=\"nowhere\" is not an address"),
            "{err}"
        );
        let err = c
            .apply_env(|k| (k == "TESSERA_MAX_CONNECTIONS").then(|| "many".to_string()))
            .expect_err("not a number");
        assert!(
            matches!(&err, ConfigError::Invalid(why) if why == "TESSERA_MAX_CONNECTIONS=\"many\" is not a valid number"),
            "{err}"
        );
    }

    #[test]
    fn the_http_table_parses_with_unknown_fields_refused() {
        let text = r#"
listen = "0.0.0.0:9000"
meta_endpoints = ["m:1"]
root_access_key = "AKREAL"
root_secret_key = "a-real-secret-key"
[http]
max_connections = 9
"#;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).expect("write");
        let c: GatewayConfig = tessera_runtime::config::load_required(&path).expect("parse");
        assert_eq!(c.http.max_connections, 9);
        assert_eq!(c.http.http2_idle_timeout_secs, 60);
        assert_eq!(c.metrics_listen, None, "no metrics listener unless asked");
        std::fs::write(
            &path,
            text.replace("[http]", "metrics_listen = \"127.0.0.1:9100\"\n[http]"),
        )
        .expect("write");
        let c: GatewayConfig = tessera_runtime::config::load_required(&path).expect("parse");
        assert_eq!(c.metrics_listen, "127.0.0.1:9100".parse().ok());
        std::fs::write(&path, text.replace("max_connections", "max_conections")).expect("write");
        let err = tessera_runtime::config::load_required::<GatewayConfig>(&path)
            .expect_err("unknown field");
        assert!(
            matches!(&err, ConfigError::Parse { source, .. } if source.to_string().contains("unknown field `max_conections`")),
            "{err}"
        );
    }
}
