//! The `hashicorp.vault` configuration: address, namespace, TLS and how to obtain a token,
//! validated once into a [`VaultConfig`].
//!
//! Invariant: every credential read here (inline, from a `*_file`, from `VAULT_TOKEN`) is
//! registered with the [`Redactor`] before it is returned.

use std::path::PathBuf;

use zeroize::Zeroizing;

use super::VaultError;
use crate::http::{self, TlsOptions};
use crate::redact::Redactor;
use crate::schedule::Deadline;
use crate::settings::{Settings, SettingsError};

/// Where Kubernetes mounts the service account token.
const KUBERNETES_JWT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Largest credential file (token, secret id, JWT) read.
const MAX_CREDENTIAL_FILE: u64 = 64 * 1024;

/// How to obtain a token.
pub(super) enum Auth {
    /// A token given directly.
    Token(Zeroizing<String>),
    /// A login whose answer holds the token.
    Login {
        /// The auth method, for messages (`approle`).
        method: &'static str,
        /// The auth mount (`approle`, or a configured path).
        mount: String,
        /// Appended to `auth/<mount>/login` (`/<username>` for userpass and LDAP).
        suffix: String,
        /// The JSON login body; holds the credential.
        body: Zeroizing<String>,
    },
}

/// The validated configuration.
pub(super) struct VaultConfig {
    /// `scheme://host:port` (plus any path prefix), no trailing slash.
    pub(super) address: String,
    /// Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`.
    pub(super) namespace: Option<String>,
    pub(super) auth: Auth,
    pub(super) tls: TlsOptions,
}

impl VaultConfig {
    pub(super) fn from_settings(
        settings: &Settings<'_>,
        redactor: &mut Redactor,
        env: &dyn Fn(&str) -> Option<String>,
        deadline: Deadline,
    ) -> Result<VaultConfig, VaultError> {
        let address = match settings.string("vault_address")? {
            Some(address) => address.to_owned(),
            None => env("VAULT_ADDR")
                .filter(|address| !address.is_empty())
                .ok_or(SettingsError::Missing {
                    key: "vault_address".to_owned(),
                    hint: " (or the VAULT_ADDR environment variable)",
                })?,
        };
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(settings
                .invalid("vault_address", "must start with http:// or https://")
                .into());
        }
        // The address may carry `user:password@`; `VAULT_ADDR` is not in the config.
        redactor.add_url(&address);
        let address = address.trim_end_matches('/').to_owned();
        let namespace = match settings.string("vault_namespace")? {
            Some(namespace) => Some(namespace.to_owned()),
            None => env("VAULT_NAMESPACE").filter(|namespace| !namespace.is_empty()),
        };
        let tls = tls_options(settings, env)?;
        let auth = auth(settings, redactor, env, deadline)?;
        Ok(VaultConfig {
            address,
            namespace,
            auth,
            tls,
        })
    }
}

fn tls_options(
    settings: &Settings<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TlsOptions, VaultError> {
    let tls = settings.section("vault_tls_config")?;
    if tls.string("tls_server")?.is_some() {
        return Err(tls
            .invalid("tls_server", "is not supported by keyturn-backend")
            .into());
    }
    let mut ca_files: Vec<PathBuf> = match tls.string("ca_cert")? {
        Some(path) => vec![PathBuf::from(path)],
        None => env("VAULT_CACERT")
            .filter(|path| !path.is_empty())
            .map(PathBuf::from)
            .into_iter()
            .collect(),
    };
    if let Some(dir) = tls.string("ca_path")? {
        let entries = std::fs::read_dir(dir)
            .map_err(|error| tls.invalid("ca_path", format!("cannot be listed: {error}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        ca_files.extend(files);
    }
    let client = match (tls.string("client_cert")?, tls.string("client_key")?) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(tls
                .invalid("client_key", "is required with client_cert")
                .into());
        }
        (None, Some(_)) => {
            return Err(tls
                .invalid("client_cert", "is required with client_key")
                .into());
        }
    };
    Ok(TlsOptions {
        ca_files,
        client,
        insecure: tls.bool("insecure")?.unwrap_or(false),
        ..TlsOptions::default()
    })
}

fn auth(
    settings: &Settings<'_>,
    redactor: &mut Redactor,
    env: &dyn Fn(&str) -> Option<String>,
    deadline: Deadline,
) -> Result<Auth, VaultError> {
    let session = settings.section("vault_session")?;
    let method = match session.string("vault_auth_type")? {
        Some(method) => method,
        None if session.string("vault_role_id")?.is_some() => "approle",
        None if session.string("vault_username")?.is_some() => "userpass",
        None if session.string("vault_ldap_username")?.is_some() => "ldap",
        None => "token",
    };
    let mount = |default: &str| -> Result<String, SettingsError> {
        let configured = session.string("vault_auth_path")?.or(session
            .string("vault_kubernetes_mount_path")?
            .filter(|_| default == "kubernetes"));
        Ok(configured.unwrap_or(default).trim_matches('/').to_owned())
    };
    let login =
        |method: &'static str, mount: String, suffix: String, body: serde_json::Value| -> Auth {
            Auth::Login {
                method,
                mount,
                suffix,
                body: Zeroizing::new(body.to_string()),
            }
        };
    match method {
        "token" => token_auth(settings, redactor, env),
        "approle" => {
            let role_id = session.required_string("vault_role_id", " (AppRole login)")?;
            let secret_id = credential(&session, "vault_secret_id", redactor)?.ok_or(
                SettingsError::Missing {
                    key: session.key_path("vault_secret_id"),
                    hint: " (or vault_secret_id_file) for AppRole login",
                },
            )?;
            Ok(login(
                "approle",
                mount("approle")?,
                String::new(),
                serde_json::json!({"role_id": role_id, "secret_id": secret_id.as_str()}),
            ))
        }
        "userpass" | "ldap" => {
            let (user_key, password_key, method) = if method == "ldap" {
                ("vault_ldap_username", "vault_ldap_password", "ldap")
            } else {
                ("vault_username", "vault_password", "userpass")
            };
            let username = session.required_string(user_key, " (username login)")?;
            let password = credential(&session, password_key, redactor)?.ok_or(
                SettingsError::Missing {
                    key: session.key_path(password_key),
                    hint: " (username login)",
                },
            )?;
            Ok(login(
                method,
                mount(method)?,
                format!("/{}", http::encode_path(username)),
                serde_json::json!({"password": password.as_str()}),
            ))
        }
        "kubernetes" => {
            let role = session.required_string("vault_kubernetes_role", " (Kubernetes login)")?;
            let jwt = match credential(&session, "vault_kubernetes_jwt", redactor)? {
                Some(jwt) => jwt,
                None => {
                    let path = session
                        .string("vault_kubernetes_jwt_path")?
                        .unwrap_or(KUBERNETES_JWT_PATH);
                    read_credential_file(&session.key_path("vault_kubernetes_jwt_path"), path, redactor)?
                }
            };
            Ok(login(
                "kubernetes",
                mount("kubernetes")?,
                String::new(),
                serde_json::json!({"role": role, "jwt": jwt.as_str()}),
            ))
        }
        "aws" => {
            let role = session.required_string("vault_aws_role", " (AWS IAM login)")?;
            let mount = mount("aws")?;
            let mut context = crate::backends::Context {
                deadline,
                redactor,
                env,
            };
            let body = crate::backends::aws::iam_login::login_body(&session, role, &mut context)
                .map_err(|error| VaultError::Login {
                    method: "aws",
                    mount: mount.clone(),
                    reason: error.to_string(),
                })?;
            Ok(Auth::Login {
                method: "aws",
                mount,
                suffix: String::new(),
                body,
            })
        }
        other => Err(session
            .invalid(
                "vault_auth_type",
                format!(
                    "{other:?} is not supported (supported: approle, userpass, ldap, kubernetes, aws, token)"
                ),
            )
            .into()),
    }
}

fn token_auth(
    settings: &Settings<'_>,
    redactor: &mut Redactor,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Auth, VaultError> {
    if let Some(token) = credential(settings, "vault_token", redactor)? {
        return Ok(Auth::Token(token));
    }
    if let Some(token) = env("VAULT_TOKEN").filter(|token| !token.is_empty()) {
        redactor.add(&token);
        return Ok(Auth::Token(Zeroizing::new(token)));
    }
    Err(SettingsError::Missing {
        key: "vault_token".to_owned(),
        hint: " (or vault_token_file, a vault_session login, or the VAULT_TOKEN environment \
               variable)",
    }
    .into())
}

/// A credential given inline under `key` or in the file named by `<key>_file`.
fn credential(
    settings: &Settings<'_>,
    key: &str,
    redactor: &mut Redactor,
) -> Result<Option<Zeroizing<String>>, VaultError> {
    if let Some(inline) = settings.string(key)? {
        redactor.add(inline);
        return Ok(Some(Zeroizing::new(inline.to_owned())));
    }
    let file_key = format!("{key}_file");
    match settings.string(&file_key)? {
        Some(path) => read_credential_file(&settings.key_path(&file_key), path, redactor).map(Some),
        None => Ok(None),
    }
}

fn read_credential_file(
    key: &str,
    path: &str,
    redactor: &mut Redactor,
) -> Result<Zeroizing<String>, VaultError> {
    let text = crate::backends::file::read_text(std::path::Path::new(path), MAX_CREDENTIAL_FILE)
        .map_err(|error| VaultError::CredentialFile {
            key: key.to_owned(),
            reason: error.to_string(),
        })?;
    let trimmed = Zeroizing::new(text.trim().to_owned());
    if trimmed.is_empty() {
        return Err(VaultError::CredentialFile {
            key: key.to_owned(),
            reason: format!("{path}: the file is empty"),
        });
    }
    redactor.add(&trimmed);
    Ok(trimmed)
}
